"""Network parsing: audit sockaddr, IP types, connect/accept assembly, /proc/net tables."""

from __future__ import annotations

import pytest

from vigil.agent.sensors.net_records import Endpoint, NetAssembler, decode_sockaddr, ip_type
from vigil.agent.sensors.sockets import TCP_LISTEN, parse_table

KEY = "vigil_net.77"
SYSCALL = ('audit(1700000000.500:42): arch=c000003e syscall={nr} success={ok} exit={exit} a0=5 a1=0 a2=10 a3=0'
           ' items=0 ppid=1 pid=4321 auid=4294967295 uid=0 comm="curl" exe="/usr/bin/curl" key="{key}"')


def feed(asm: NetAssembler, *records: tuple[int, str]) -> list:  # type: ignore[type-arg]
    out = []
    for t, text in records:
        out += asm.feed(t, text.encode(), 0.0)
    return out


@pytest.mark.parametrize(("nr", "ok", "exit_", "action"), [
    (42, "yes", 0, "ConnectionSuccess"),
    (42, "no", -115, "ConnectionAttempt"),
    (42, "no", -111, "ConnectionFailed"),
    (288, "yes", 7, "InboundConnectionAccepted"),
])
def test_syscall_and_sockaddr_become_one_event(nr: int, ok: str, exit_: int, action: str) -> None:
    asm = NetAssembler()
    events = feed(asm, (1300, SYSCALL.format(nr=nr, ok=ok, exit=exit_, key=KEY)),
                  (1306, "audit(1700000000.500:42): saddr=0200D05B7F0000010000000000000000"),
                  (1320, "audit(1700000000.500:42): "))
    assert len(events) == 1
    ev = events[0]
    assert (ev.action, ev.pid, ev.exe, ev.remote) == (action, 4321, "/usr/bin/curl", Endpoint("127.0.0.1", 53339))
    assert ev.fd == (7 if nr == 288 else 5)
    assert ev.errno == (111 if exit_ == -111 else 115 if exit_ == -115 else 0)


def test_other_syscalls_are_ignored_whatever_their_key_and_lost_eoe_expires() -> None:
    asm = NetAssembler()
    assert feed(asm, (1300, SYSCALL.format(nr=59, ok="yes", exit=0, key=KEY)),
                (1306, "audit(1700000000.500:42): saddr=0200D05B7F000001"), (1320, "audit(1700000000.500:42): ")) == []
    # Another agent's (or auditd's) rule matched first: its key is on the record, which still counts.
    assert len(feed(asm, (1300, SYSCALL.format(nr=42, ok="yes", exit=0, key="auditd_net")),
                    (1306, "audit(1700000000.500:42): saddr=0200D05B7F0000010000000000000000"),
                    (1320, "audit(1700000000.500:42): "))) == 1
    feed(asm, (1300, SYSCALL.format(nr=42, ok="yes", exit=0, key=KEY)),
         (1306, "audit(1700000000.500:42): saddr=0A00D05B" "00000000" "00000000000000000000000000000001" "00000000"))
    expired = list(asm.expire(1700000010.0))
    assert len(expired) == 1 and expired[0].remote == Endpoint("::1", 53339)


def test_sockaddr_of_other_families_is_none() -> None:
    assert decode_sockaddr("01002F746D702F736F636B") is None  # AF_UNIX
    assert decode_sockaddr("zz") is None


@pytest.mark.parametrize(("ip", "kind"), [
    ("127.0.0.1", "Loopback"), ("::1", "Loopback"), ("10.0.0.1", "Private"), ("192.168.1.1", "Private"),
    ("8.8.8.8", "Public"), ("2606:4700::1111", "Public"), ("255.255.255.255", "Broadcast"),
    ("224.0.0.1", "Broadcast"), ("::ffff:1.2.3.4", "FourToSixMapping"), ("2001:0:4136:e378:8000:63bf:3fff:fdd2",
                                                                         "Teredo"),
    ("0.0.0.0", "Reserved"), ("240.0.0.1", "Reserved"), ("not an ip", "Reserved"),
])
def test_ip_types_follow_defender(ip: str, kind: str) -> None:
    assert ip_type(ip) == kind


def test_proc_net_tables_parse() -> None:
    text = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0 100 0 0 10 0
   1: 0100007F:A1B2 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 23456 1 0 20 4 30 10 -1
"""
    listen, conn = parse_table(text, "Tcp")
    assert listen.state == TCP_LISTEN and listen.local == Endpoint("127.0.0.1", 8080) and listen.inode == 12345
    assert conn.remote == Endpoint("127.0.0.1", 8080) and conn.local.port == 0xA1B2
    v6 = ("  sl  local_address                         remote_address                        st\n"
          "   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 0:0 0:0 0 0 0 999\n")
    (entry,) = parse_table(v6, "Tcp")
    assert entry.local == Endpoint("::1", 80) and entry.inode == 999
