"""The network sensor's eBPF provider against the real kernel: connects, accepts, refusals, IPv6, fallbacks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.agent.conftest import ListSink
from tests.integration.agent.support import wait_for
from vigil.agent.clock import SystemClock
from vigil.agent.config import AgentConfig
from vigil.agent.sensors.base import HealthState, SensorContext
from vigil.agent.sensors.network import NetworkSensor
from vigil.agent.sensors.process import ProcessSensor

pytestmark = [pytest.mark.root]

# A listener that lives on after the connection, as servers do; it prints its port when listening.
SERVER = "import socket,sys,time; s=socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET);" \
         " s.bind((sys.argv[1],0)); s.listen(); print(s.getsockname()[1], flush=True); c,_=s.accept(); c.recv(1);" \
         " sys.stdin.read()"
CLIENT = "import socket,sys; c=socket.create_connection((sys.argv[1],int(sys.argv[2]))); c.send(b'x')"
REFUSED = "import socket,sys,time\ntry: socket.create_connection(('127.0.0.1',int(sys.argv[1])))\n" \
          "except ConnectionRefusedError: pass\nelse: sys.exit(3)\ntime.sleep(0.5)"


def network_sensor(tmp_path: Path, sink: ListSink, ctx: SensorContext | None = None) -> NetworkSensor:
    ctx = ctx or SensorContext(sink, SystemClock(), AgentConfig(state_dir=tmp_path, network_provider="ebpf"))
    sensor = NetworkSensor(ctx)
    health = sensor.start()
    assert health.state is HealthState.ACTIVE, str(health)
    assert health.reason.startswith("provider eBPF (vigil_sock_state)") and sensor.provider == "ebpf"
    return sensor


def rows(sink: ListSink, action: str, port: int) -> list[dict[str, Any]]:
    return [r for r in sink.snapshot() if r["table"] == "DeviceNetworkEvents" and r["ActionType"] == action
            and port in (r.get("RemotePort"), r.get("LocalPort"))]


def start_server(host: str) -> tuple[subprocess.Popen[str], int]:
    server = subprocess.Popen([sys.executable, "-c", SERVER, host], stdout=subprocess.PIPE, stdin=subprocess.PIPE,
                              text=True)
    assert server.stdout is not None
    return server, int(server.stdout.readline())


def end(server: subprocess.Popen[str]) -> None:
    assert server.stdin is not None
    server.stdin.close()
    server.wait(10)


@pytest.mark.requires_bpf_tp_btf
@pytest.mark.requires_bpf_network
def test_connect_and_accept_are_attributed_to_their_processes_in_the_kernel(tmp_path: Path, sink: ListSink) -> None:
    # As in the agent: the process sensor describes processes for the network sensor, so a client
    # gone before its row is built still has its command line.
    config = AgentConfig(state_dir=tmp_path, network_provider="ebpf", process_provider="ebpf")
    ctx = SensorContext(sink, SystemClock(), config)
    processes = ProcessSensor(ctx)
    assert processes.start().state is HealthState.ACTIVE
    sensor = network_sensor(tmp_path, sink, ctx)
    marker = f"vigil-net-{os.getpid()}"
    try:
        server, port = start_server("127.0.0.1")
        client = subprocess.Popen([sys.executable, "-c", CLIENT, "127.0.0.1", str(port), marker])
        assert client.wait(10) == 0
        assert wait_for(lambda: rows(sink, "ConnectionSuccess", port) and rows(sink, "InboundConnectionAccepted", port),
                        10), sink.snapshot()[-5:]
        end(server)
    finally:
        sensor.stop()
        processes.stop()
    out = rows(sink, "ConnectionSuccess", port)
    inbound = rows(sink, "InboundConnectionAccepted", port)
    assert len(out) == 1 and len(inbound) == 1
    o, i = out[0], inbound[0]
    assert o["InitiatingProcessId"] == client.pid
    assert o["InitiatingProcessCommandLine"].endswith(f"127.0.0.1 {port} {marker}"), o
    assert o["InitiatingProcessParentId"] == os.getpid()
    assert (o["RemoteIP"], o["RemotePort"], o["RemoteIPType"], o["Protocol"]) == ("127.0.0.1", port, "Loopback", "Tcp")
    assert o["LocalIP"] == "127.0.0.1" and o["LocalIPType"] == "Loopback" and o["LocalPort"] not in (0, port)
    assert i["InitiatingProcessId"] == server.pid and "SERVER" not in i["InitiatingProcessCommandLine"]
    assert i["InitiatingProcessCommandLine"].endswith("127.0.0.1")
    assert (i["LocalIP"], i["LocalPort"], i["RemoteIP"], i["RemotePort"]) == ("127.0.0.1", port, "127.0.0.1",
                                                                              o["LocalPort"])
    listen = rows(sink, "ListeningConnectionCreated", port)
    assert [r["InitiatingProcessId"] for r in listen] == [server.pid]
    assert "RemoteIP" not in listen[0] and listen[0]["LocalPort"] == port
    assert sensor.health().state is HealthState.ACTIVE, str(sensor.health())  # nothing dropped or failed


@pytest.mark.requires_bpf_network
def test_a_refused_connect_is_a_failed_connection_with_its_errno(tmp_path: Path, sink: ListSink) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: a connect to it is refused
    port = closed.getsockname()[1]
    sensor = network_sensor(tmp_path, sink)
    try:
        client = subprocess.Popen([sys.executable, "-c", REFUSED, str(port)])
        assert client.wait(10) == 0
        assert wait_for(lambda: rows(sink, "ConnectionFailed", port), 10), sink.snapshot()[-5:]
    finally:
        sensor.stop()
        closed.close()
    failed = rows(sink, "ConnectionFailed", port)
    assert len(failed) == 1 and not rows(sink, "ConnectionSuccess", port)
    f = failed[0]
    assert f["InitiatingProcessId"] == client.pid and f["InitiatingProcessFileName"].startswith("python")
    assert f["AdditionalFields"] == {"Errno": "ECONNREFUSED"}
    assert (f["RemoteIP"], f["RemotePort"], f["Protocol"]) == ("127.0.0.1", port, "Tcp")


@pytest.mark.requires_bpf_network
def test_ipv6_loopback_connections_have_ipv6_ends(tmp_path: Path, sink: ListSink) -> None:
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError as e:
        pytest.skip(f"no IPv6 loopback here: {e}")
    sensor = network_sensor(tmp_path, sink)
    try:
        server, port = start_server("::1")
        client = subprocess.Popen([sys.executable, "-c", CLIENT + "; import time; time.sleep(0.5)", "::1", str(port)])
        assert wait_for(lambda: rows(sink, "ConnectionSuccess", port) and rows(sink, "InboundConnectionAccepted", port),
                        10), sink.snapshot()[-5:]
        client.wait(10)
        end(server)
    finally:
        sensor.stop()
    o, i = rows(sink, "ConnectionSuccess", port)[0], rows(sink, "InboundConnectionAccepted", port)[0]
    assert o["InitiatingProcessId"] == client.pid and i["InitiatingProcessId"] == server.pid
    assert (o["RemoteIP"], o["LocalIP"], o["RemoteIPType"], o["LocalIPType"]) == ("::1", "::1", "Loopback", "Loopback")
    assert (i["LocalIP"], i["LocalPort"], i["RemotePort"]) == ("::1", port, o["LocalPort"])


@pytest.mark.requires_bpf_network
def test_a_listener_older_than_the_agent_is_still_named_on_accept(tmp_path: Path, sink: ListSink) -> None:
    server, port = start_server("127.0.0.1")  # listen() happens before the program is attached
    sensor = network_sensor(tmp_path, sink)
    try:
        client = subprocess.Popen([sys.executable, "-c", CLIENT, "127.0.0.1", str(port)])
        assert client.wait(10) == 0
        assert wait_for(lambda: rows(sink, "InboundConnectionAccepted", port), 10), sink.snapshot()[-5:]
        end(server)
    finally:
        sensor.stop()
    assert not rows(sink, "ListeningConnectionCreated", port)
    assert rows(sink, "InboundConnectionAccepted", port)[0]["InitiatingProcessId"] == server.pid


@pytest.mark.requires_bpf_network
def test_the_agents_own_connections_are_not_reported(tmp_path: Path, sink: ListSink) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    sensor = network_sensor(tmp_path, sink)
    try:
        with socket.create_connection(("127.0.0.1", port)):
            listener.accept()[0].close()
        marker_server, marker_port = start_server("127.0.0.1")  # someone else's, reported: the rows did flow
        subprocess.run([sys.executable, "-c", CLIENT, "127.0.0.1", str(marker_port)], check=True)
        assert wait_for(lambda: rows(sink, "InboundConnectionAccepted", marker_port), 10)
        end(marker_server)
    finally:
        sensor.stop()
        listener.close()
    assert not rows(sink, "ConnectionSuccess", port)


@pytest.mark.requires_audit
def test_without_the_object_the_sensor_falls_back_to_audit_and_says_why(tmp_path: Path, sink: ListSink) -> None:
    missing = tmp_path / "nowhere" / "network.bpf.o"
    config = AgentConfig(state_dir=tmp_path, network_bpf_object_path=missing)
    sensor = NetworkSensor(SensorContext(sink, SystemClock(), config))
    health = sensor.start()
    try:
        assert health.state is HealthState.ACTIVE and sensor.provider == "audit", str(health)
        assert health.reason.startswith(f"provider audit; eBPF unavailable: open {missing}: "), health.reason
        assert "not built" in health.reason
        server, port = start_server("127.0.0.1")
        client = subprocess.Popen([sys.executable, "-c", CLIENT, "127.0.0.1", str(port)])
        assert client.wait(10) == 0
        assert wait_for(lambda: rows(sink, "ConnectionSuccess", port), 10)
        end(server)
    finally:
        sensor.stop()
    assert rows(sink, "ConnectionSuccess", port)[0]["InitiatingProcessId"] == client.pid


def test_forcing_ebpf_without_the_object_leaves_the_sensor_unavailable_with_the_reason(
        tmp_path: Path, sink: ListSink) -> None:
    missing = tmp_path / "network.bpf.o"
    config = AgentConfig(state_dir=tmp_path, network_provider="ebpf", network_bpf_object_path=missing)
    sensor = NetworkSensor(SensorContext(sink, SystemClock(), config))
    health = sensor.start()
    sensor.stop()
    assert health.state is HealthState.UNAVAILABLE
    assert health.reason.startswith(f"eBPF unavailable but network_provider = ebpf: open {missing}: ")
    assert sensor.probe().state is HealthState.UNAVAILABLE
    audit_only = AgentConfig(state_dir=tmp_path, network_provider="audit", use_audit=False)
    forced = NetworkSensor(SensorContext(sink, SystemClock(), audit_only))
    health = forced.start()
    forced.stop()
    assert health.reason.startswith("eBPF not tried (network_provider = audit); audit disabled by configuration")
