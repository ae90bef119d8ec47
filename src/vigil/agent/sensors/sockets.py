"""The kernel's socket tables (/proc/net/tcp, tcp6, udp, udp6) and which process owns a socket inode."""

from __future__ import annotations

import os
import socket
import struct
from collections import Counter
from collections.abc import Collection, Iterable
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
INET_DIAG_REQ_BYTECODE = 1
INET_DIAG_BC_JMP = 1
INET_DIAG_BC_D_COND = 8
_ALL_STATES = 0xFFFFFFFF
MAX_FILTERED_REMOTES = 1000  # more remote ends than this in one refresh: dump every socket instead
_NLMSGHDR = struct.Struct("=IHHII")
_NLATTR = struct.Struct("=HH")
_DIAG_REQ = struct.Struct("=BBBBI48x")  # inet_diag_req_v2 with an empty sockid: every socket
_BC_OP = struct.Struct("=BBH")  # inet_diag_bc_op: code, yes, no (jump offsets in bytes)
_HOSTCOND = struct.Struct("=BBxxi")  # inet_diag_hostcond: family, prefix_len, port; the address follows
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


def remote_filter(remotes: Iterable[Endpoint]) -> bytes | None:
    """inet_diag bytecode keeping only sockets whose remote end is one of ``remotes`` (an IPv4 end
    also matches its v4-mapped form on IPv6 sockets); None when there is none to keep.

    Conditions are chained as "c1 or (c2 or (...))": a condition that holds falls through to a
    jump past the rest (the end: keep), one that fails skips that jump to the next condition; the
    last one's failure jumps 4 bytes past the end (drop). The kernel checks every offset."""
    rest = b""
    for remote in sorted(set(remotes), key=lambda e: (e.ip, e.port), reverse=True):
        try:
            family, addr = socket.AF_INET, socket.inet_pton(socket.AF_INET, remote.ip)
        except OSError:
            try:
                family, addr = socket.AF_INET6, socket.inet_pton(socket.AF_INET6, remote.ip)
            except OSError:
                continue  # not an address: nothing can match it
        size = _BC_OP.size + _HOSTCOND.size + len(addr)
        cond = _BC_OP.pack(INET_DIAG_BC_D_COND, size, size + 4) + _HOSTCOND.pack(family, 8 * len(addr),
                                                                                  remote.port) + addr
        rest = cond + (_BC_OP.pack(INET_DIAG_BC_JMP, 4, len(rest) + 4) + rest if rest else b"")
    return rest or None


class SocketIndex:
    """IPv4/IPv6 TCP and UDP sockets by inode and by remote end, from one sock_diag dump per table
    (a tenth of the CPU of reading /proc/net/tcp, which walks the whole hash table in text); an
    entry is decoded only when looked up.

    A busy host has thousands of sockets in TIME_WAIT, so a refresh can ask the kernel for only the
    sockets with given remote ends (and the listening ones): lookups by those ends, and by the inode
    of a socket with one of them, answer as after a full dump."""

    def __init__(self, use_sock_diag: bool = True) -> None:
        self._by_inode: dict[int, _Raw] = {}
        self._by_remote: dict[bytes, _Raw] = {}
        self._remote_count: Counter[bytes] = Counter()
        self.sock_diag_error: OSError | None = None if use_sock_diag else OSError("sock_diag not used")
        self.filter_error: OSError | None = None  # the kernel refused the filter: full dumps from then on

    def refresh(self, remotes: Collection[Endpoint] | None = None, listening: bool = False) -> None:
        """Dump the socket tables: every socket, or only those whose remote end is in ``remotes``
        plus, when ``listening``, the listening TCP sockets (an accept's local end)."""
        by_inode: dict[int, _Raw] = {}
        by_remote: dict[bytes, _Raw] = {}
        count: Counter[bytes] = Counter()
        if self.sock_diag_error is None:
            bytecode = None
            if remotes is not None and self.filter_error is None and len(remotes) <= MAX_FILTERED_REMOTES:
                bytecode = remote_filter(remotes) or b""
            try:
                with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as sock:
                    if bytecode is not None:
                        try:
                            messages = self._filtered(sock, bytecode, listening)
                        except OSError as e:  # an old kernel's bytecode check: dump everything instead
                            self.filter_error = e
                            bytecode = None
                    if bytecode is None:
                        messages = [(protocol, msg) for family, proto, protocol in _DUMPS
                                    for msg in _dump(sock, family, proto)]
                for protocol, msg in messages:
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

    @staticmethod
    def _filtered(sock: socket.socket, bytecode: bytes, listening: bool) -> list[tuple[str, bytes]]:
        out: list[tuple[str, bytes]] = []
        for family, proto, protocol in _DUMPS:
            if bytecode:
                out += [(protocol, msg) for msg in _dump(sock, family, proto, bytecode=bytecode)]
            if listening and proto == socket.IPPROTO_TCP:
                out += [(protocol, msg) for msg in _dump(sock, family, proto, states=1 << TCP_LISTEN)]
        return out

    def by_inode(self, inode: int) -> SocketEntry | None:
        raw = self._by_inode.get(inode)
        return _decode(raw) if raw is not None else None

    def by_remote(self, remote: Endpoint) -> SocketEntry | None:
        """The one socket with this remote end, or None when there are none or several."""
        keys = [k for k in _remote_keys(remote) if k in self._remote_count]
        if len(keys) != 1 or self._remote_count[keys[0]] != 1:
            return None
        return _decode(self._by_remote[keys[0]])


def _dump(
    sock: socket.socket, family: int, proto: int, states: int = _ALL_STATES, bytecode: bytes = b""
) -> list[bytes]:
    request = _DIAG_REQ.pack(family, proto, 0, 0, states)
    if bytecode:
        request += _NLATTR.pack(_NLATTR.size + len(bytecode), INET_DIAG_REQ_BYTECODE) + bytecode
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
