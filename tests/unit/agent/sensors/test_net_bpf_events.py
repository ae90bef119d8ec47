"""Decoding network.bpf.c's ring-buffer records, built here field by field, and turning them into rows."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from vigil.agent.sensors.net_bpf_events import RECORD, BadRecord, NetKind, decode
from vigil.agent.sensors.net_records import Endpoint
from vigil.agent.sensors.network import _row as audit_row
from vigil.agent.sensors.network_ebpf import KernelNetRows, ListenerOwners
from vigil.agent.sensors.process_lookup import ProcessDirectory

V4, V6 = socket.AF_INET, socket.AF_INET6
TCP, UDP = socket.IPPROTO_TCP, socket.IPPROTO_UDP


def v4(ip: str) -> bytes:
    return socket.inet_pton(V4, ip) + bytes(12)


def v6(ip: str) -> bytes:
    return socket.inet_pton(V6, ip)


def record(kind: int, pid: int, *, family: int = V4, local: tuple[bytes, int] = (v4("10.0.0.5"), 40000),
           remote: tuple[bytes, int] = (v4("93.184.216.34"), 443), err: int = 0, ppid: int = 1, uid: int = 1000,
           proto: int = TCP, comm: bytes = b"curl", ts: int = 5_000_000_000) -> bytes:
    """A record as the kernel side writes it (struct vigil_net_event)."""
    return RECORD.pack(ts, kind, pid, pid, ppid, uid, err, family, proto, local[1], remote[1], local[0], remote[0],
                       comm)


def rows_of(records: list[bytes], processes: ProcessDirectory | None = None, **kw: object) -> list[dict]:  # type: ignore[type-arg]
    rows, bad = KernelNetRows(processes or ProcessDirectory(), **kw).feed(records)  # type: ignore[arg-type]
    assert not bad, bad
    return rows


def test_the_record_is_the_kernel_structs_88_bytes() -> None:
    assert RECORD.size == 88  # sizeof(struct vigil_net_event) in network.bpf.c


def test_connect_record_decodes_both_ends_and_the_process() -> None:
    ev = decode(record(NetKind.CONNECTED, 4242, ppid=77, uid=1000))
    assert ev.kind is NetKind.CONNECTED and ev.action == "ConnectionSuccess"
    assert (ev.pid, ev.ppid, ev.uid, ev.comm, ev.protocol) == (4242, 77, 1000, "curl", "Tcp")
    assert (ev.local_ip, ev.local_port, ev.remote_ip, ev.remote_port) == ("10.0.0.5", 40000, "93.184.216.34", 443)
    assert ev.timestamp_ns == 5_000_000_000


def test_ipv6_and_v4_mapped_addresses_are_written_as_the_audit_path_writes_them() -> None:
    ev = decode(record(NetKind.ACCEPTED, 1, family=V6, local=(v6("::1"), 8080), remote=(v6("::ffff:192.0.2.9"), 5555)))
    assert (ev.local_ip, ev.remote_ip) == ("::1", "192.0.2.9")
    assert ev.action == "InboundConnectionAccepted"


def test_a_failed_connect_says_refused_and_an_abandoned_one_is_an_attempt() -> None:
    assert decode(record(NetKind.FAILED, 3, err=111)).action == "ConnectionFailed"
    assert decode(record(NetKind.FAILED, 3, err=0)).action == "ConnectionAttempt"


@pytest.mark.parametrize(("rec", "problem"), [
    (record(NetKind.CONNECTED, 1)[:-1], "record of 87 bytes, not the 88"),
    (record(9, 1), "unknown record kind 9"),
    (record(NetKind.CONNECTED, 1, family=1), "address family 1 is neither AF_INET nor AF_INET6"),
    (record(NetKind.CONNECTED, 1, proto=1), "protocol 1 is neither TCP nor UDP"),
    (record(NetKind.UDP_CONNECT, 1, proto=TCP), "a UDP_CONNECT record with protocol Tcp"),
    (record(NetKind.CONNECTED, 1, proto=UDP), "a CONNECTED record with protocol Udp"),
])
def test_malformed_records_are_refused_saying_what_is_wrong(rec: bytes, problem: str) -> None:
    with pytest.raises(BadRecord, match=problem) as raised:
        decode(rec)
    rows, bad = KernelNetRows(ProcessDirectory()).feed([rec, record(NetKind.CONNECTED, 2)])
    assert [str(b) for b in bad] == [str(raised.value)]
    assert len(rows) == 1 and rows[0]["InitiatingProcessId"] == 2  # the rest of the batch still counts


def test_a_udp_connect_decodes_as_a_udp_connection_success() -> None:
    ev = decode(record(NetKind.UDP_CONNECT, 4242, proto=UDP, local=(bytes(16), 0), remote=(v4("10.255.255.53"), 53),
                       comm=b"getent"))
    assert (ev.kind, ev.action, ev.protocol) == (NetKind.UDP_CONNECT, "ConnectionSuccess", "Udp")
    assert (ev.remote_ip, ev.remote_port, ev.local_ip, ev.local_port) == ("10.255.255.53", 53, "0.0.0.0", 0)
    assert (ev.pid, ev.comm) == (4242, "getent")


def test_udp_connect_rows_have_the_remote_end_and_a_local_end_only_when_bound() -> None:
    gone = 4_000_000
    unbound, bound = rows_of([
        record(NetKind.UDP_CONNECT, gone, proto=UDP, family=V6, local=(bytes(16), 0), remote=(v6("2606:4700::53"), 53),
               comm=b"dig"),
        record(NetKind.UDP_CONNECT, gone, proto=UDP, local=(v4("127.0.0.1"), 5000), remote=(v4("127.0.0.53"), 53)),
    ])
    assert (unbound["ActionType"], unbound["Protocol"]) == ("ConnectionSuccess", "Udp")
    assert (unbound["RemoteIP"], unbound["RemotePort"], unbound["RemoteIPType"]) == ("2606:4700::53", 53, "Public")
    assert not any(k.startswith("Local") for k in unbound)  # the kernel binds it after the hook: no local end yet
    assert unbound["InitiatingProcessFileName"] == "dig" and "AdditionalFields" not in unbound
    assert (bound["LocalIP"], bound["LocalPort"], bound["RemoteIP"], bound["Protocol"]) == ("127.0.0.1", 5000,
                                                                                            "127.0.0.53", "Udp")


def test_a_udp_flood_from_one_process_is_a_row_per_connect() -> None:
    # Nothing is deduplicated here: the budget gate after this decides what is folded, and counts it.
    recs = [record(NetKind.UDP_CONNECT, 7, proto=UDP, remote=(v4("127.0.0.53"), 53)) for _ in range(50)]
    assert len(rows_of(recs)) == 50


def test_rows_have_the_audit_paths_columns_and_the_live_process_is_described() -> None:
    me = os.getpid()
    processes = ProcessDirectory()
    row = rows_of([record(NetKind.CONNECTED, me)], processes)[0]
    expected = audit_row("ConnectionSuccess", row["Timestamp"], Endpoint("93.184.216.34", 443),
                         Endpoint("10.0.0.5", 40000), "Tcp")
    expected.update(processes.initiating(me))
    assert row == expected
    assert row["RemoteIPType"] == "Public" and row["LocalIPType"] == "Private"
    assert row["InitiatingProcessFolderPath"] == os.readlink("/proc/self/exe")
    assert row["InitiatingProcessCommandLine"]


def test_a_process_gone_before_the_batch_is_described_from_the_record() -> None:
    gone = 4_000_000  # above pid_max's default: no such process
    row = rows_of([record(NetKind.FAILED, gone, err=111, ppid=77, uid=1000, comm=b"nc\0junk")])[0]
    assert row["ActionType"] == "ConnectionFailed" and row["AdditionalFields"] == {"Errno": "ECONNREFUSED"}
    assert row["InitiatingProcessId"] == gone and row["InitiatingProcessFileName"] == "nc"
    assert row["InitiatingProcessPosixUserId"] == 1000 and row["InitiatingProcessParentId"] == 77


def test_a_refused_connects_released_port_leaves_the_local_columns_out() -> None:
    row = rows_of([record(NetKind.FAILED, 5, err=111, local=(v4("127.0.0.1"), 0),
                          remote=(v4("127.0.0.1"), 1))])[0]
    assert "LocalPort" not in row and "LocalIP" not in row
    assert (row["RemoteIP"], row["RemotePort"], row["RemoteIPType"]) == ("127.0.0.1", 1, "Loopback")


def test_a_listen_has_only_its_local_end() -> None:
    row = rows_of([record(NetKind.LISTEN, 5, local=(v6("::"), 22), remote=(bytes(16), 0), family=V6)])[0]
    assert row["ActionType"] == "ListeningConnectionCreated"
    assert (row["LocalIP"], row["LocalPort"], row["LocalIPType"]) == ("::", 22, "Reserved")
    assert "RemoteIP" not in row and "RemotePort" not in row


def test_an_accept_on_a_listener_older_than_the_program_asks_who_listens_on_the_port() -> None:
    asked: list[int] = []

    def listener(port: int) -> int:
        asked.append(port)
        return os.getpid() if port == 8080 else 0

    rows = rows_of([record(NetKind.ACCEPTED, 0, local=(v4("127.0.0.1"), 8080)),
                    record(NetKind.ACCEPTED, 0, local=(v4("127.0.0.1"), 9090))], listeners=listener)
    assert asked == [8080, 9090]
    assert rows[0]["InitiatingProcessId"] == os.getpid() and rows[0]["InitiatingProcessFileName"]
    assert not any(k.startswith("InitiatingProcess") for k in rows[1])  # nobody listens there: no process


def test_the_agents_own_connections_are_not_reported() -> None:
    rows = rows_of([record(NetKind.CONNECTED, 1234), record(NetKind.CONNECTED, 99)], own_pid=1234)
    assert [r["InitiatingProcessId"] for r in rows] == [99]


def test_a_batch_describes_each_process_once(tmp_path: Path) -> None:
    calls: list[int] = []

    class Counting(ProcessDirectory):
        def initiating(self, pid: int) -> dict:  # type: ignore[type-arg]
            calls.append(pid)
            return super().initiating(pid)

    me = os.getpid()
    rows = rows_of([record(NetKind.CONNECTED, me, remote=(v4("192.0.2.1"), p)) for p in range(1, 6)], Counting())
    assert calls == [me]
    assert [r["RemotePort"] for r in rows] == [1, 2, 3, 4, 5]
    assert all(r["InitiatingProcessId"] == me for r in rows)
    rows[0]["InitiatingProcessId"] = -1  # rows share no mutable state
    assert rows[1]["InitiatingProcessId"] == me


def tcp_table(*rows: tuple[int, str, int]) -> str:
    """/proc/net/tcp text: (port, state, inode) per socket."""
    head = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    return head + "".join(f"{i:4d}: 0100007F:{port:04X} 00000000:0000 {state} 00000000:00000000 00:00000000 00000000"
                          f"     0        0 {inode} 1 0000000000000000 100 0 0 10 0\n"
                          for i, (port, state, inode) in enumerate(rows))


def test_listeners_older_than_the_program_are_found_by_their_listen_lines_only(tmp_path: Path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port, inode = sock.getsockname()[1], os.fstat(sock.fileno()).st_ino
    (tmp_path / "tcp").write_text(tcp_table((port + 1, "06", 0), (port, "0A", inode), (port + 2, "01", 424242)))
    reads: list[int] = []

    class Counted(ListenerOwners):
        def listening(self) -> dict[int, int]:
            reads.append(1)
            return super().listening()

    owners = Counted(str(tmp_path), refresh_seconds=0.0, forget_seconds=60.0)
    try:
        assert owners.listening() == {inode: port}  # TIME_WAIT and ESTABLISHED lines are skipped; no tcp6: fine
        reads.clear()
        assert owners.pid(port) == os.getpid() and owners.pid(port) == os.getpid()
        assert owners.pid(port + 2) == 0 and owners.pid(port + 2) == 0  # not a listener: looked for once
        assert len(reads) == 2
    finally:
        sock.close()
