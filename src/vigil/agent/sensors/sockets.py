"""The kernel's socket tables (/proc/net/tcp, tcp6, udp, udp6) and which process owns a socket inode."""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass

from vigil.agent.sensors.net_records import Endpoint, ipv6_text

TCP_ESTABLISHED = 1
TCP_LISTEN = 10


@dataclass(frozen=True)
class SocketEntry:
    protocol: str  # Tcp or Udp, as Defender spells it
    local: Endpoint
    remote: Endpoint
    state: int
    inode: int


def _endpoint(text: str) -> Endpoint:
    addr_hex, port_hex = text.split(":")
    raw = bytes.fromhex(addr_hex)
    if len(raw) == 4:
        ip = socket.inet_ntop(socket.AF_INET, struct.pack("<I", struct.unpack(">I", raw)[0]))
    else:  # four host-order 32-bit words
        ip = ipv6_text(b"".join(struct.pack("<I", w) for w in struct.unpack(">4I", raw)))
    return Endpoint(ip, int(port_hex, 16))


def parse_table(text: str, protocol: str) -> list[SocketEntry]:
    out = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) < 10:
            continue
        out.append(SocketEntry(protocol, _endpoint(parts[1]), _endpoint(parts[2]), int(parts[3], 16), int(parts[9])))
    return out


def read_tables(root: str = "/proc/net") -> list[SocketEntry]:
    entries: list[SocketEntry] = []
    for name, protocol in (("tcp", "Tcp"), ("tcp6", "Tcp"), ("udp", "Udp"), ("udp6", "Udp")):
        try:
            with open(f"{root}/{name}") as f:
                entries += parse_table(f.read(), protocol)
        except OSError:
            continue  # no IPv6 here, or no such protocol
    return entries


def socket_inode(pid: int, fd: int) -> int | None:
    """The inode of ``fd`` in ``pid`` if it is a socket (the process may already be gone)."""
    try:
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return None
    if target.startswith("socket:["):
        return int(target[8:-1])
    return None


def owners(inodes: set[int]) -> dict[int, int]:
    """Socket inode → pid, by walking /proc/*/fd; costly, so only for inodes that are new."""
    found: dict[int, int] = {}
    if not inodes:
        return found
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fds = os.scandir(f"/proc/{entry.name}/fd")
        except OSError:
            continue
        with fds:
            for fd in fds:
                try:
                    target = os.readlink(fd.path)
                except OSError:
                    continue
                if target.startswith("socket:[") and (inode := int(target[8:-1])) in inodes:
                    found[inode] = int(entry.name)
        if len(found) == len(inodes):
            break
    return found
