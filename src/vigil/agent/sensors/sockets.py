"""The kernel's socket tables (/proc/net/tcp, tcp6, udp, udp6) and which process owns a socket inode."""

from __future__ import annotations

import os
import socket
import struct
from collections import Counter
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
    for name, protocol in _TABLES:
        try:
            with open(f"{root}/{name}") as f:
                entries += parse_table(f.read(), protocol)
        except OSError:
            continue  # no IPv6 here, or no such protocol
    return entries


_TABLES = (("tcp", "Tcp"), ("tcp6", "Tcp"), ("udp", "Udp"), ("udp6", "Udp"))

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
_NLMSGHDR = struct.Struct("=IHHII")
_DIAG_REQ = struct.Struct("=BBBBI48x")  # inet_diag_req_v2 with an empty sockid: every socket
_DIAG_MSG = struct.Struct("=BBBB2s2s16s16s12xIIIII")  # inet_diag_msg up to idiag_inode
_DUMPS = ((socket.AF_INET, socket.IPPROTO_TCP, "Tcp"), (socket.AF_INET6, socket.IPPROTO_TCP, "Tcp"),
          (socket.AF_INET, socket.IPPROTO_UDP, "Udp"), (socket.AF_INET6, socket.IPPROTO_UDP, "Udp"))
_Raw = tuple[str, bytes] | SocketEntry  # protocol and the inet_diag_msg, or an entry read from /proc/net


def _remote_keys(endpoint: Endpoint) -> tuple[bytes, ...]:
    """How sock_diag keys this remote end (family, port, address); an IPv4 peer may also sit on an
    IPv6 socket under its v4-mapped address."""
    port = struct.pack("!H", endpoint.port)
    try:
        packed = socket.inet_pton(socket.AF_INET, endpoint.ip)
    except OSError:
        try:
            return (bytes([socket.AF_INET6]) + port + socket.inet_pton(socket.AF_INET6, endpoint.ip),)
        except OSError:
            return ()
    return (bytes([socket.AF_INET]) + port + packed + bytes(12),
            bytes([socket.AF_INET6]) + port + bytes(10) + b"\xff\xff" + packed)


class SocketIndex:
    """Every IPv4/IPv6 TCP and UDP socket by inode and by remote end, from one sock_diag dump per
    table (a tenth of the CPU of reading /proc/net/tcp, which walks the whole hash table in text);
    an entry is decoded only when looked up, since a busy host has thousands in TIME_WAIT."""

    def __init__(self, use_sock_diag: bool = True) -> None:
        self._by_inode: dict[int, _Raw] = {}
        self._by_remote: dict[bytes, _Raw] = {}
        self._remote_count: Counter[bytes] = Counter()
        self.sock_diag_error: OSError | None = None if use_sock_diag else OSError("sock_diag not used")

    def refresh(self) -> None:
        by_inode: dict[int, _Raw] = {}
        by_remote: dict[bytes, _Raw] = {}
        count: Counter[bytes] = Counter()
        if self.sock_diag_error is None:
            try:
                with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as sock:
                    for family, proto, protocol in _DUMPS:
                        for msg in _dump(sock, family, proto):
                            inode = int.from_bytes(msg[68:72], "little")
                            if inode:
                                by_inode[inode] = (protocol, msg)
                            key = msg[0:1] + msg[6:8] + msg[24:40]  # family, dport, dst
                            by_remote[key] = (protocol, msg)
                            count[key] += 1
            except OSError as e:  # kept (the sensor shows it) and /proc/net read from now on
                self.sock_diag_error = e
        if self.sock_diag_error is not None:
            by_inode.clear()
            by_remote.clear()
            count.clear()
            for entry in read_tables():
                if entry.inode:
                    by_inode[entry.inode] = entry
                for key in _remote_keys(entry.remote)[:1]:
                    by_remote[key] = entry
                    count[key] += 1
        self._by_inode, self._by_remote, self._remote_count = by_inode, by_remote, count

    def by_inode(self, inode: int) -> SocketEntry | None:
        raw = self._by_inode.get(inode)
        return _decode(raw) if raw is not None else None

    def by_remote(self, remote: Endpoint) -> SocketEntry | None:
        """The one socket with this remote end, or None when there are none or several."""
        keys = [k for k in _remote_keys(remote) if k in self._remote_count]
        if len(keys) != 1 or self._remote_count[keys[0]] != 1:
            return None
        return _decode(self._by_remote[keys[0]])


def _dump(sock: socket.socket, family: int, proto: int) -> list[bytes]:
    request = _DIAG_REQ.pack(family, proto, 0, 0, 0xFFFFFFFF)
    sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(request), SOCK_DIAG_BY_FAMILY, 0x301, 1, 0) + request)
    out: list[bytes] = []  # NLM_F_REQUEST | NLM_F_DUMP above
    while True:
        data = sock.recv(1 << 16)
        offset = 0
        while offset + _NLMSGHDR.size <= len(data):
            length, mtype = _NLMSGHDR.unpack_from(data, offset)[:2]
            if mtype == 3:  # NLMSG_DONE
                return out
            if mtype == 2:  # NLMSG_ERROR
                code = -struct.unpack_from("=i", data, offset + _NLMSGHDR.size)[0]
                raise OSError(code, f"sock_diag dump refused: {os.strerror(code)}")
            out.append(data[offset + _NLMSGHDR.size : offset + length])
            offset += (length + 3) & ~3
        if not data:
            return out


def _address(family: int, raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET, raw[:4]) if family == socket.AF_INET else ipv6_text(raw)


def _decode(raw: _Raw) -> SocketEntry:
    if isinstance(raw, SocketEntry):
        return raw
    protocol, msg = raw
    family, state, _t, _r, sport, dport, src, dst, _exp, _rq, _wq, _uid, inode = _DIAG_MSG.unpack_from(msg)
    return SocketEntry(protocol, Endpoint(_address(family, src), int.from_bytes(sport, "big")),
                       Endpoint(_address(family, dst), int.from_bytes(dport, "big")), state, inode)


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
