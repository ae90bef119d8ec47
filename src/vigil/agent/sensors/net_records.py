"""Network facts from audit records and socket tables: sockaddr decoding, IP types, connect/accept events."""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass
from functools import lru_cache

from vigil.agent.sensors.audit_events import AuditInterest, RecordAssembler, SyscallEvent, syscall_keys
from vigil.agent.sensors.audit_parse import decode_value

AUDIT_SOCKADDR = 1306
EINPROGRESS = 115

# Syscall numbers by audit arch: connect, accept, accept4.
_CONNECT = {"c000003e": 42, "c00000b7": 203}
_ACCEPT = {"c000003e": (43, 288), "c00000b7": (202, 242)}
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
# connect/accept/accept4 on x86_64 and aarch64. Records are taken whatever their key: audit logs a
# syscall once, under the first matching rule, which may be another agent's or auditd's.
NET_INTEREST = AuditInterest(
    syscalls=syscall_keys([(arch, (nr, *_ACCEPT[arch])) for arch, nr in _CONNECT.items()]),
    record_types=frozenset({AUDIT_SOCKADDR}),
)


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int


@lru_cache(maxsize=4096)  # Endpoint is frozen: shared by every record with the same peer
def decode_sockaddr(hex_text: str) -> Endpoint | None:
    """An AF_INET/AF_INET6 sockaddr as audit prints it (hex); None for other families."""
    try:
        raw = bytes.fromhex(hex_text)
    except ValueError:
        return None
    if len(raw) < 8:
        return None
    family = struct.unpack_from("=H", raw)[0]
    port = struct.unpack_from("!H", raw, 2)[0]
    if family == socket.AF_INET:
        return Endpoint(socket.inet_ntop(socket.AF_INET, raw[4:8]), port)
    if family == socket.AF_INET6 and len(raw) >= 24:
        return Endpoint(ipv6_text(raw[8:24]), port)
    return None


def ipv6_text(packed: bytes) -> str:
    addr = ipaddress.IPv6Address(packed)
    return str(addr.ipv4_mapped) if addr.ipv4_mapped else str(addr)


@lru_cache(maxsize=4096)  # ipaddress is slow (µs per property) and a host talks to few addresses
def ip_type(ip: str) -> str:
    """Defender's IP types: Public, Private, Reserved, Loopback, Teredo, FourToSixMapping, Broadcast."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return "Reserved"
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return "FourToSixMapping"
        if addr.teredo is not None:
            return "Teredo"
    if addr.is_loopback:
        return "Loopback"
    if addr.is_multicast or addr == _BROADCAST:
        return "Broadcast"
    if addr.is_unspecified or addr.is_reserved:
        return "Reserved"
    if addr.is_private or addr.is_link_local:
        return "Private"
    return "Public" if addr.is_global else "Reserved"


@dataclass(frozen=True)
class NetRecord:
    """One connect or accept as audit saw it."""

    serial: int
    timestamp: float
    action: str  # ConnectionSuccess, ConnectionAttempt, ConnectionFailed, InboundConnectionAccepted
    pid: int
    ppid: int
    uid: int
    exe: str
    comm: str
    fd: int  # connect: the socket (a0); accept: the new socket (exit)
    remote: Endpoint
    errno: int = 0
    listen_fd: int = -1  # accept: the listening socket (a0), which outlives the connection


def _int(text: str | None, base: int = 10) -> int:
    try:
        return int(text or "", base)
    except ValueError:
        return -1


class NetAssembler(RecordAssembler["NetRecord"]):
    """Joins SYSCALL + SOCKADDR by event serial for connect/accept syscalls, under any rule's key:
    the network part of the shared audit feed, usable on its own."""

    def __init__(self, max_age: float = 2.0) -> None:
        super().__init__(NET_INTEREST, build_net, max_age)


def _saddr(payload: bytes) -> str:
    """The saddr value of a SOCKADDR record (``audit(...): saddr=HEX``, its only field)."""
    at = payload.find(b" saddr=", payload.find(b"):"))
    if at < 0:
        return ""
    end = payload.find(b" ", at + 7)
    return payload[at + 7 : end if end >= 0 else None].rstrip(b"\0\n").decode("ascii", "replace")


def build_net(event: SyscallEvent) -> NetRecord | None:
    """The NetRecord of one connect/accept event, or None (no IPv4/IPv6 peer, a failed accept)."""
    sockaddrs = event.payloads(AUDIT_SOCKADDR)
    if not sockaddrs:
        return None
    remote = decode_sockaddr(_saddr(sockaddrs[-1]))
    if remote is None:
        return None
    f = event.syscall
    arch, nr, ok = f.get("arch", ""), _int(f.get("syscall")), f.get("success") == "yes"
    exit_code = _int(f.get("exit"))
    listen_fd = -1
    if nr == _CONNECT.get(arch):
        fd = _int(f.get("a0"), 16)
        action = "ConnectionSuccess" if ok else "ConnectionAttempt" if exit_code == -EINPROGRESS else "ConnectionFailed"
    elif nr in _ACCEPT.get(arch, ()) and ok:
        fd, action, listen_fd = exit_code, "InboundConnectionAccepted", _int(f.get("a0"), 16)
    else:
        return None
    return NetRecord(
        serial=event.serial, timestamp=event.timestamp, action=action, pid=_int(f.get("pid")),
        ppid=_int(f.get("ppid")), uid=_int(f.get("uid")), exe=decode_value(f.get("exe", "")) or "",
        comm=decode_value(f.get("comm", "")) or "", fd=fd, remote=remote,
        errno=-exit_code if not ok and exit_code < 0 else 0, listen_fd=listen_fd,
    )
