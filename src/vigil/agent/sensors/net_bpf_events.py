"""Decodes the records of bpf/network.bpf.c: one fixed-size TCP connect, failure, accept or listen, or UDP
connect, each."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from enum import IntEnum

from vigil.agent.sensors.net_records import ipv6_text

# struct vigil_net_event in network.bpf.c, field for field; both change together.
RECORD = struct.Struct("<QIIIIIiHHHH16s16s16s")


class NetKind(IntEnum):
    CONNECTED = 1  # SYN_SENT -> ESTABLISHED
    FAILED = 2  # SYN_SENT -> CLOSE (refused, timed out, unreachable; err 0: closed while connecting)
    ACCEPTED = 3  # a listener's new connection finished its handshake
    LISTEN = 4
    UDP_CONNECT = 5  # connect() on a UDP socket (seen before the kernel binds it: local end often 0)


# What each kind is in DeviceNetworkEvents; a FAILED record without an error was abandoned, not refused.
ACTIONS = {
    NetKind.CONNECTED.value: "ConnectionSuccess",
    NetKind.FAILED.value: "ConnectionFailed",
    NetKind.ACCEPTED.value: "InboundConnectionAccepted",
    NetKind.LISTEN.value: "ListeningConnectionCreated",
    NetKind.UDP_CONNECT.value: "ConnectionSuccess",  # as Defender reports a UDP connect, with Protocol Udp
}
ABANDONED_ACTION = "ConnectionAttempt"

PROTOCOLS = {socket.IPPROTO_TCP: "Tcp", socket.IPPROTO_UDP: "Udp"}
# The protocol column of each (kind, protocol) a record may carry: UDP_CONNECT is UDP's, the rest TCP's.
KIND_PROTOCOLS = {(kind, socket.IPPROTO_TCP): "Tcp" for kind in ACTIONS if kind != NetKind.UDP_CONNECT}
KIND_PROTOCOLS[NetKind.UDP_CONNECT.value, socket.IPPROTO_UDP] = "Udp"


class BadRecord(ValueError):
    """A ring-buffer record that does not have the layout network.bpf.c writes."""


@dataclass(frozen=True, slots=True)
class KernelNetEvent:
    """One record as the kernel wrote it. pid 0: the process is unknown (it connected or listened
    before the program was attached). Times are CLOCK_BOOTTIME nanoseconds."""

    kind: NetKind
    timestamp_ns: int
    pid: int
    tid: int
    ppid: int
    uid: int
    err: int
    protocol: str
    local_ip: str
    local_port: int
    remote_ip: str
    remote_port: int
    comm: str

    @property
    def action(self) -> str:
        return action_of(self.kind, self.err)


def action_of(kind: int, err: int) -> str:
    return ABANDONED_ACTION if kind == NetKind.FAILED and not err else ACTIONS[kind]


def address(family: int, raw: bytes) -> str:
    """The text of an address as the kernel stores it: AF_INET in the first 4 bytes, AF_INET6 in all 16
    (a v4-mapped one written as the IPv4 address, as the audit path does)."""
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[:4])
    if family == socket.AF_INET6:
        return ipv6_text(raw)
    raise BadRecord(f"address family {family} is neither AF_INET nor AF_INET6")


def check(kind: int, family: int, protocol: int, size: int) -> None:
    """Raises BadRecord saying what is wrong with a record's size, kind, family or protocol."""
    if size != RECORD.size:
        raise BadRecord(f"record of {size} bytes, not the {RECORD.size} of struct vigil_net_event")
    if kind not in ACTIONS:
        raise BadRecord(f"unknown record kind {kind}")
    if family not in (socket.AF_INET, socket.AF_INET6):
        raise BadRecord(f"address family {family} is neither AF_INET nor AF_INET6")
    if protocol not in PROTOCOLS:
        raise BadRecord(f"protocol {protocol} is neither TCP nor UDP")
    if (kind, protocol) not in KIND_PROTOCOLS:
        raise BadRecord(f"a {NetKind(kind).name} record with protocol {PROTOCOLS[protocol]}")


def decode(record: bytes) -> KernelNetEvent:
    """One ring-buffer record; raises BadRecord saying what is wrong."""
    if len(record) != RECORD.size:
        check(0, 0, 0, len(record))
    ts, kind, pid, tid, ppid, uid, err, family, proto, lport, rport, laddr, raddr, comm = RECORD.unpack(record)
    check(kind, family, proto, len(record))
    return KernelNetEvent(NetKind(kind), ts, pid, tid, ppid, uid, err, KIND_PROTOCOLS[kind, proto],
                          address(family, laddr), lport, address(family, raddr), rport,
                          comm.split(b"\0", 1)[0].decode("utf-8", "surrogateescape"))
