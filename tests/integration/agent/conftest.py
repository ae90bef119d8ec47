"""Fixtures for agent integration tests: a collecting sink and kernel capability checks."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from vigil.agent.sensors.proc_connector import ProcConnectorError, close_proc_connector, open_proc_connector


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
