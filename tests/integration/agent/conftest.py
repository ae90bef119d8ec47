"""Fixtures for agent integration tests: a collecting sink and kernel capability checks."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from vigil.agent.errors import SensorUnavailable
from vigil.agent.sensors import fanotify
from vigil.agent.sensors.audit_netlink import AuditControl, open_multicast
from vigil.agent.sensors.libbpf import BpfError, EventSource
from vigil.agent.sensors.network_ebpf import BpfNetworkSource
from vigil.agent.sensors.proc_connector import ProcConnectorError, close_proc_connector, open_proc_connector
from vigil.agent.sensors.process_ebpf import BpfProcessSource


class ListSink:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        with self._lock:
            self.rows += [dict(r) for r in rows]

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.rows)


@pytest.fixture
def sink() -> ListSink:
    return ListSink()


@pytest.fixture
def proc_connector_available() -> None:
    """Skip (with the kernel's reason) where the proc connector cannot be used."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the proc connector and audit netlink require CAP_NET_ADMIN/CAP_AUDIT_*")
    try:
        close_proc_connector(open_proc_connector(rcvbuf=1 << 16))
    except ProcConnectorError as e:
        pytest.skip(f"proc connector refused here (network namespace?): {e.strerror}")


def _proc_connector_missing() -> str | None:
    try:
        close_proc_connector(open_proc_connector(rcvbuf=1 << 16))
    except ProcConnectorError as e:
        return f"proc connector refused here (network namespace?): {e.strerror}"
    return None


def _audit_missing() -> str | None:
    try:
        open_multicast(rcvbuf=1 << 16).close()
        with AuditControl() as ctl:
            if ctl.status().enabled == 2:
                return "audit configuration is locked (enabled=2)"
    except (SensorUnavailable, OSError) as e:
        return f"audit netlink unusable here: {e}"
    return None


def _bpf_missing(source: Callable[[], EventSource]) -> Callable[[], str | None]:
    """A sensor's own eBPF object: built (make bpf), loaded and its programs attached."""
    def missing() -> str | None:
        try:
            source().close()
        except BpfError as e:
            return str(e)
        return None
    return missing


_bpf_tp_btf_missing = _bpf_missing(BpfProcessSource)
_bpf_network_missing = _bpf_missing(BpfNetworkSource)


_PROBES = {
    "requires_proc_connector": _proc_connector_missing,
    "requires_audit": _audit_missing,
    "requires_fanotify": fanotify.probe,
    "requires_bpf_tp_btf": _bpf_tp_btf_missing,
    "requires_bpf_network": _bpf_network_missing,
}


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Probe markers: each runs the agent's own capability probe and skips with its reason."""
    for marker in item.iter_markers():
        probe = _PROBES.get(marker.name)
        if probe is None:
            continue
        if os.geteuid() != 0:
            pytest.skip(f"{marker.name}: needs root")
        reason = probe()
        if reason:
            pytest.skip(f"{marker.name}: {reason}")
