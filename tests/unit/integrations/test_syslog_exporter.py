"""The TCP syslog exporter's delivery check against real loopback sockets."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from vigil.integrations import exporters
from vigil.integrations.records import Record


def _record() -> Record:
    return Record(record_id="r-1", table="DeviceProcessEvents",
                  time="2026-12-07T00:00:00Z", properties={"DeviceName": "web-01", "ProcessCommandLine": "/bin/true"})


def _syslog(port: int) -> exporters.Exporter:
    ctx = exporters.Context(tenant_id="t", hostname="vigil", version="test")
    return exporters.build("syslog", {"host": "127.0.0.1", "port": port, "transport": "tcp", "timeout": 2}, ctx)


def test_a_connection_to_itself_is_a_refusal_not_a_delivery(monkeypatch: pytest.MonkeyPatch) -> None:
    # What the kernel can do when nothing listens on a loopback port in the ephemeral range: pick that port as
    # the source and connect the socket to itself. Built here on purpose; the exporter must not count it as sent.
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()

    def self_connected(address: tuple[str, int], timeout: float | None = None, **_: Any) -> socket.socket:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(address)
        s.connect(address)
        assert s.getsockname() == s.getpeername()
        return s

    monkeypatch.setattr(exporters.socket, "create_connection", self_connected)
    with pytest.raises(exporters.ExportFailed, match="connected to itself"):
        _syslog(port).send([_record()])


def test_a_port_nobody_listens_on_fails_the_batch() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with pytest.raises(exporters.ExportFailed, match=f"127.0.0.1:{port}"):
        _syslog(port).send([_record()])
