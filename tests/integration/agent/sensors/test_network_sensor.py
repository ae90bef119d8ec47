"""The network sensor on audit (forced: auto prefers eBPF): a TCP connection to a local listener, attributed on both
ends."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.agent.conftest import ListSink
from tests.integration.agent.support import wait_for
from vigil.agent.clock import SystemClock
from vigil.agent.config import AgentConfig
from vigil.agent.sensors.audit_netlink import AuditControl
from vigil.agent.sensors.base import HealthState, SensorContext
from vigil.agent.sensors.network import NetworkSensor

pytestmark = [pytest.mark.root, pytest.mark.requires_audit]

# A listener that lives on after the connection, as servers do: the accept's local end is read
# from the listening socket when the connection itself is gone already.
SERVER = "import socket,sys,time; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(); print(s.getsockname()[1]," \
         " flush=True); c,_=s.accept(); c.recv(1); time.sleep(1)"
CLIENT = "import socket,sys; c=socket.create_connection(('127.0.0.1',int(sys.argv[1]))); c.send(b'x')"


def our_keys() -> list[str]:
    with AuditControl() as ctl:
        return [r.key or "" for r in ctl.list_rules() if (r.key or "").endswith(f".{os.getpid()}")]


def test_connect_and_accept_are_attributed_to_their_processes(tmp_path: Path, sink: ListSink) -> None:
    with AuditControl() as ctl:
        before = ctl.status()
    config = AgentConfig(state_dir=tmp_path, network_provider="audit")
    sensor = NetworkSensor(SensorContext(sink, SystemClock(), config))
    assert sensor.start().state is HealthState.ACTIVE, sensor.health()
    try:
        server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
        assert server.stdout is not None
        port = int(server.stdout.readline())
        client = subprocess.Popen([sys.executable, "-c", CLIENT, str(port)])
        assert client.wait(10) == 0 and server.wait(10) == 0

        def rows(action: str) -> list[dict]:  # type: ignore[type-arg]
            return [r for r in sink.snapshot() if r["table"] == "DeviceNetworkEvents" and r["ActionType"] == action
                    and port in (r.get("RemotePort"), r.get("LocalPort"))]

        if not wait_for(lambda: rows("ConnectionSuccess") and rows("InboundConnectionAccepted"), 10):
            with AuditControl() as ctl:  # audit is machine-wide: say who changed it under the test
                state = (ctl.status(), [r.key for r in ctl.list_rules()])
            raise AssertionError(f"no connect/accept rows; audit now {state}; rows {sink.snapshot()[:5]}")
    finally:
        sensor.stop()
    out = rows("ConnectionSuccess")[0]
    assert out["InitiatingProcessId"] == client.pid
    assert out["RemoteIP"] == "127.0.0.1" and out["RemotePort"] == port and out["RemoteIPType"] == "Loopback"
    assert out["Protocol"] == "Tcp" and out["LocalIP"] == "127.0.0.1"
    assert "python" in out["InitiatingProcessFileName"]
    inbound = rows("InboundConnectionAccepted")[0]
    assert inbound["InitiatingProcessId"] == server.pid
    assert inbound["LocalPort"] == port and inbound["RemotePort"] == out["LocalPort"]
    assert our_keys() == [], "the agent's audit rules must be removed on stop"
    with AuditControl() as ctl:
        after = ctl.status()
    if not [r for r in AuditControl().list_rules()]:  # nobody else holds audit: it is as we found it
        assert (after.enabled, after.backlog_limit) == (before.enabled, before.backlog_limit)


def test_without_audit_the_socket_table_fallback_reports_new_connections(tmp_path: Path, sink: ListSink) -> None:
    config = AgentConfig(state_dir=tmp_path, use_audit=False, network_poll_seconds=0.2, network_provider="audit")
    sensor = NetworkSensor(SensorContext(sink, SystemClock(), config))
    health = sensor.start()
    assert health.state is HealthState.DEGRADED and "polling socket tables" in health.reason
    try:
        server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
        assert server.stdout is not None
        port = int(server.stdout.readline())
        client = subprocess.Popen([sys.executable, "-c", CLIENT + "; import time; time.sleep(1)", str(port)])
        found = wait_for(lambda: [r for r in sink.snapshot() if r.get("RemotePort") == port
                                  and r["ActionType"] == "ConnectionSuccess"], 10)
        client.wait(10)
        server.wait(10)
    finally:
        sensor.stop()
    assert found
    row = next(r for r in sink.snapshot() if r.get("RemotePort") == port and r["ActionType"] == "ConnectionSuccess")
    assert row["InitiatingProcessId"] == client.pid and row["AdditionalFields"] == {"Source": "socket_table"}
