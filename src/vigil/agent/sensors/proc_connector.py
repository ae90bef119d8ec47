"""The Linux proc connector over netlink: fork, exec and exit notifications for every process."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
NLMSG_DONE = 3
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2
SO_RCVBUFFORCE = 33

PROC_EVENT_FORK = 0x00000001
PROC_EVENT_EXEC = 0x00000002
PROC_EVENT_EXIT = 0x80000000

_NLMSGHDR = struct.Struct("=IHHII")
_CN_MSG = struct.Struct("=IIIIHH")
_EVENT_HEAD = struct.Struct("=IIQ")
_FORK = struct.Struct("=IIII")
_EXEC = struct.Struct("=II")
_EXIT = struct.Struct("=IIII")


@dataclass(frozen=True)
class ForkEvent:
    timestamp_ns: int  # CLOCK_MONOTONIC
    parent_pid: int
    parent_tgid: int
    child_pid: int
    child_tgid: int


@dataclass(frozen=True)
class ExecEvent:
    timestamp_ns: int
    pid: int
    tgid: int


@dataclass(frozen=True)
class ExitEvent:
    timestamp_ns: int
    pid: int
    tgid: int
    exit_code: int
    exit_signal: int


ProcEvent = ForkEvent | ExecEvent | ExitEvent


class ProcConnectorError(OSError):
    """The proc connector could not be opened (not root, not the initial network namespace...)."""


def _control(op: int) -> bytes:
    payload = struct.pack("=I", op)
    cn = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(payload), 0) + payload
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(cn), NLMSG_DONE, 0, 0, os.getpid()) + cn


def open_proc_connector(rcvbuf: int = 8 << 20) -> socket.socket:
    """Subscribe to process events; raises ProcConnectorError with the kernel's reason."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
    except OSError as e:
        raise ProcConnectorError(e.errno, f"netlink connector socket refused: {e.strerror}") from e
    try:
        # SO_RCVBUFFORCE needs CAP_NET_ADMIN; fall back to the ordinary (capped) size.
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((0, CN_IDX_PROC))
        sock.send(_control(PROC_CN_MCAST_LISTEN))
    except OSError as e:
        sock.close()
        raise ProcConnectorError(e.errno, f"proc connector subscription refused: {e.strerror}") from e
    return sock


def close_proc_connector(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # the socket may already be gone; closing is what matters
        sock.send(_control(PROC_CN_MCAST_IGNORE))
    sock.close()


def parse(data: bytes) -> Iterator[ProcEvent]:
    """Decode one datagram; events this sensor does not use (uid, comm, ptrace...) are skipped."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length = _NLMSGHDR.unpack_from(data, offset)[0]
        if length < _NLMSGHDR.size:
            return
        body = offset + _NLMSGHDR.size + _CN_MSG.size
        offset += (length + 3) & ~3
        if body + _EVENT_HEAD.size > len(data):
            return
        what, _cpu, ts = _EVENT_HEAD.unpack_from(data, body)
        ev = body + _EVENT_HEAD.size
        if what == PROC_EVENT_EXEC:
            yield ExecEvent(ts, *_EXEC.unpack_from(data, ev))
        elif what == PROC_EVENT_FORK:
            yield ForkEvent(ts, *_FORK.unpack_from(data, ev))
        elif what == PROC_EVENT_EXIT:
            pid, tgid, code, sig = _EXIT.unpack_from(data, ev)
            yield ExitEvent(ts, pid, tgid, code, sig)
