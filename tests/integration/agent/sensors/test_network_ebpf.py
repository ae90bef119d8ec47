"""The network sensor's eBPF provider against the real kernel: connects, accepts, refusals, IPv6, UDP connects,
fallbacks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.agent.conftest import ListSink
from tests.integration.agent.support import wait_for
from vigil.agent.budget import DROP_AGGREGATED, Budget, BudgetLimits
from vigil.agent.clock import SystemClock
from vigil.agent.config import AgentConfig
from vigil.agent.sensors.base import HealthState, SensorContext
from vigil.agent.sensors.net_bpf_events import NetKind, decode
from vigil.agent.sensors.network import NetworkSensor
from vigil.agent.sensors.network_ebpf import UDP_PROGRAMS, BpfNetworkSource, source_health
from vigil.agent.sensors.process import ProcessSensor
from vigil.agent.spool import Spool

pytestmark = [pytest.mark.root]

# A listener that lives on after the connection, as servers do; it prints its port when listening.
SERVER = "import socket,sys,time; s=socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET);" \
         " s.bind((sys.argv[1],0)); s.listen(); print(s.getsockname()[1], flush=True); c,_=s.accept(); c.recv(1);" \
         " sys.stdin.read()"
CLIENT = "import socket,sys; c=socket.create_connection((sys.argv[1],int(sys.argv[2]))); c.send(b'x')"
REFUSED = "import socket,sys,time\ntry: socket.create_connection(('127.0.0.1',int(sys.argv[1])))\n" \
          "except ConnectionRefusedError: pass\nelse: sys.exit(3)\ntime.sleep(0.5)"
# connect()s a UDP socket to (host, port), bound first to (host, 0) when asked; prints its local port (0:
# unbound) and stays until its stdin closes, so its command line can still be read.
UDP_CLIENT = "import socket,sys; h,p,bind=sys.argv[1],int(sys.argv[2]),sys.argv[3]=='bind';" \
             " u=socket.socket(socket.AF_INET6 if ':' in h else socket.AF_INET, socket.SOCK_DGRAM);" \
             " bind and u.bind((h,0)); u.connect((h,p)); print(u.getsockname()[1] if bind else 0, flush=True);" \
             " sys.stdin.read()"
UDP_FLOOD = "import socket,sys\nfor i in range(int(sys.argv[1])):\n" \
            "    u=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); u.connect(('127.0.0.1',int(sys.argv[2])+i%10))" \
            "; u.close()"
UDP_MISSING = "UDP connects are NOT reported"


def network_sensor(tmp_path: Path, sink: ListSink, ctx: SensorContext | None = None, *,
                   udp: bool = False) -> NetworkSensor:
    """A started eBPF network sensor; a test that needs UDP connects is skipped, saying why, where the
    cgroup programs could not be attached."""
    ctx = ctx or SensorContext(sink, SystemClock(), AgentConfig(state_dir=tmp_path, network_provider="ebpf"))
    sensor = NetworkSensor(ctx)
    health = sensor.start()
    assert health.reason.startswith("provider eBPF (vigil_sock_state") and sensor.provider == "ebpf", str(health)
    if health.state is HealthState.DEGRADED and UDP_MISSING in health.reason:
        if udp:
            sensor.stop()
            pytest.skip(health.reason)
        return sensor
    assert health.state is HealthState.ACTIVE, str(health)
    assert health.reason.startswith("provider eBPF (vigil_sock_state, vigil_udp_connect4, vigil_udp_connect6): ")
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
    assert sensor.health() == sensor._health, str(sensor.health())  # nothing dropped or failed


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


def udp_client(host: str, port: int, marker: str, bind: bool = False) -> tuple[subprocess.Popen[str], int]:
    client = subprocess.Popen([sys.executable, "-c", UDP_CLIENT, host, str(port), "bind" if bind else "-", marker],
                              stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
    assert client.stdout is not None
    return client, int(client.stdout.readline())


@pytest.mark.requires_bpf_network
def test_udp_connects_are_reported_with_their_remote_end_and_process(tmp_path: Path, sink: ListSink) -> None:
    ipv6 = True
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).bind(("::1", 0))
    except OSError:
        ipv6 = False
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    port = receiver.getsockname()[1]
    port6 = port + 1 if port < 65535 else port - 1  # a UDP connect needs nobody at the other end
    marker = f"vigil-udp-{os.getpid()}"
    ctx = SensorContext(sink, SystemClock(), AgentConfig(state_dir=tmp_path, network_provider="ebpf"))
    sensor = network_sensor(tmp_path, sink, ctx, udp=True)
    clients = []
    try:
        clients.append(udp_client("127.0.0.1", port, marker))
        if ipv6:
            clients.append(udp_client("::1", port6, marker, bind=True))  # bound: its local end is known
        server, tcp_port = start_server("127.0.0.1")  # TCP beside it: still one row per connect, never Udp
        tcp = subprocess.Popen([sys.executable, "-c", CLIENT, "127.0.0.1", str(tcp_port)])
        assert tcp.wait(10) == 0
        assert wait_for(lambda: rows(sink, "ConnectionSuccess", port) and rows(sink, "ConnectionSuccess", tcp_port)
                        and (not ipv6 or rows(sink, "ConnectionSuccess", port6)), 10), sink.snapshot()[-5:]
        end(server)
        out = {p: rows(sink, "ConnectionSuccess", p) for p in (port, port6, tcp_port)}
        live = {c.pid: ctx.processes.initiating(c.pid)["InitiatingProcessCommandLine"] for c, _ in clients}
    finally:
        for client, _ in clients:
            assert client.stdin is not None
            client.stdin.close()
            client.wait(10)
        sensor.stop()
        receiver.close()
    (v4,) = out[port]
    assert (v4["Protocol"], v4["RemoteIP"], v4["RemotePort"], v4["RemoteIPType"]) == ("Udp", "127.0.0.1", port,
                                                                                      "Loopback")
    assert v4["InitiatingProcessId"] == clients[0][0].pid and v4["InitiatingProcessParentId"] == os.getpid()
    assert v4["InitiatingProcessCommandLine"] == live[clients[0][0].pid]
    assert v4["InitiatingProcessCommandLine"].endswith(f"127.0.0.1 {port} - {marker}")
    assert "LocalPort" not in v4 and "LocalIP" not in v4  # unbound when it connected: the kernel picks it later
    if ipv6:
        (v6,) = out[port6]
        client6, local6 = clients[1]
        assert (v6["Protocol"], v6["RemoteIP"], v6["RemotePort"]) == ("Udp", "::1", port6)
        assert (v6["LocalIP"], v6["LocalPort"]) == ("::1", local6)
        assert v6["InitiatingProcessId"] == client6.pid
        assert v6["InitiatingProcessCommandLine"].endswith(f"::1 {port6} bind {marker}")
    (t,) = out[tcp_port]
    assert t["Protocol"] == "Tcp" and t["InitiatingProcessId"] == tcp.pid
    assert not [r for r in sink.snapshot() if r.get("Protocol") == "Udp" and tcp_port in (r.get("RemotePort"),
                                                                                            r.get("LocalPort"))]


@pytest.mark.requires_bpf_network
def test_without_cgroup_v2_tcp_is_still_reported_and_health_says_udp_is_not(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"  # this host's mounts without its cgroup2 line
    mountinfo.write_text("".join(line for line in Path("/proc/self/mountinfo").read_text().splitlines(True)
                                 if " - cgroup2 " not in line))
    source = BpfNetworkSource(mountinfo=str(mountinfo))
    try:
        assert source.programs == ["vigil_sock_state"]
        assert source.udp_missing.startswith("vigil_udp_connect4: find the cgroup-v2 root: ")
        assert f"cgroup v2 is not mounted (none in {mountinfo})" in source.udp_missing
        health = source_health(source)
        assert health.state is HealthState.DEGRADED
        assert f"UDP connects are NOT reported: {source.udp_missing}" in health.reason
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.connect(("127.0.0.1", port))
            listener.accept()[0].close()
        listener.close()
        seen: list[tuple[NetKind, str]] = []

        def connected() -> bool:
            seen.extend((e.kind, e.protocol) for e in map(decode, source.ring.consume())
                        if port in (e.remote_port, e.local_port))
            return (NetKind.CONNECTED, "Tcp") in seen

        assert wait_for(connected, 5), seen
        assert (NetKind.UDP_CONNECT, "Udp") not in seen
    finally:
        source.close()


@pytest.mark.requires_bpf_network
def test_a_cgroup_attach_failure_names_the_step_and_the_errno(tmp_path: Path) -> None:
    not_a_cgroup = tmp_path / "cg"
    not_a_cgroup.mkdir()
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(f"99 1 0:99 / {not_a_cgroup} rw,relatime - cgroup2 cgroup2 rw\n")
    source = BpfNetworkSource(mountinfo=str(mountinfo))
    try:
        assert source.programs == ["vigil_sock_state"]
        for name in UDP_PROGRAMS:
            assert f"{name}: attach {name} to the cgroup {not_a_cgroup}: " in source.udp_missing, source.udp_missing
        errno_text = source.udp_missing.split(f"to the cgroup {not_a_cgroup}: ", 1)[1].split(";")[0]
        assert errno_text in {os.strerror(e) for e in range(1, 134)}, errno_text
    finally:
        source.close()


@pytest.mark.requires_bpf_network
def test_a_udp_flood_over_the_rate_is_aggregated_and_dropped_with_counts(tmp_path: Path) -> None:
    n, base = 400, 40000 + os.getpid() % 20000
    spool = Spool(tmp_path / "spool.db", SystemClock())
    # 20 rows/s and summaries for at most 3 (action, process, remote end) keys: 10 remote ports overflow it.
    limits = BudgetLimits(rate_limits=(("network", 20.0),), max_aggregate_keys=3, aggregate_seconds=0.5)
    config = AgentConfig(state_dir=tmp_path / "state", network_provider="ebpf", budget=limits)
    ctx = SensorContext(spool, SystemClock(), config, budget=Budget(limits, losses=spool))
    sensor = network_sensor(tmp_path, ListSink(), ctx, udp=True)
    try:
        flood = subprocess.run([sys.executable, "-c", UDP_FLOOD, str(n), str(base)], check=True)
        assert flood.returncode == 0
        gate = sensor._gate
        assert gate is not None
        assert wait_for(lambda: gate.passed + gate.folded + gate.dropped >= n, 15)
    finally:
        sensor.stop()
    counters = spool.counters()
    bodies = [json.loads(b) for (b,) in spool._db.execute("SELECT body FROM events").fetchall()]
    mine = [r for r in bodies if r.get("Protocol") == "Udp" and base <= r.get("RemotePort", 0) < base + 10
            and r["RemoteIP"] == "127.0.0.1"]
    represented = sum((r.get("AdditionalFields") or {}).get("AggregatedCount", 1) for r in mine)
    dropped = counters.dropped
    assert dropped.get(DROP_AGGREGATED, 0) > 0 and dropped.get("rate_limit.network", 0) > 0, dropped
    # Each connect is a row, folded into a summary, or a counted drop (other processes' rows may share the counts).
    lost = dropped["rate_limit.network"] + dropped.get("kernel_overflow", 0)
    assert represented <= n <= represented + lost, (represented, dropped)
    assert counters.produced == counters.spooled + sum(dropped.values())
    spool.close()


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
