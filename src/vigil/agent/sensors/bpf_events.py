"""Decodes the process records of bpf/process.bpf.c (a fixed header, then exe, argv and cwd bytes)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from vigil.agent.sensors.procfs import join_argv

# struct vigil_event in process.bpf.c, field for field; both change together.
# After comm: the process group, then fds 0-2 as (inode, rdev, mode) (zero for forks).
HEADER = struct.Struct("<QQIIIIIIIIIHHHH16s4xI4x" + "QIH2x" * 3)
PGID = 16  # HEADER's field index of pgid; fd n's inode, rdev and mode follow at FDS + 3n
FDS = 17

ARGV_TRUNCATED = 1
EXE_TRUNCATED = 2
CWD_TRUNCATED = 4


class Kind(IntEnum):
    EXEC = 1
    FORK = 2
    EXIT = 3


class BadRecord(ValueError):
    """A ring-buffer record that does not have the layout process.bpf.c writes."""


@dataclass(frozen=True, slots=True)
class KernelProcessEvent:
    """One exec, fork (of a process, not a thread) or process exit, as the kernel described it.
    Times are CLOCK_BOOTTIME nanoseconds; exe, command line and cwd are set for execs only."""

    kind: Kind
    timestamp_ns: int
    start_ns: int
    pid: int  # the process (tgid)
    tid: int
    ppid: int  # the real parent's tgid
    uid: int
    gid: int
    euid: int
    exit_code: int  # wait(2) status
    flags: int
    comm: str
    exe: str = ""
    command_line: str = ""
    cwd: str = ""
    pgid: int = 0
    fds: tuple[tuple[int, int, int], ...] = ()  # fds 0-2 as (inode, rdev, mode); mode 0: not open

    @property
    def argv_truncated(self) -> bool:
        return bool(self.flags & ARGV_TRUNCATED)


_KINDS = {k.value: k for k in Kind}


def path_from_leaf_first(raw: bytes) -> str:
    """The kernel writes a path's names leaf first, each NUL-terminated: b"true\\0bin\\0usr\\0" → /usr/bin/true."""
    if not raw:
        return ""
    names = raw.split(b"\0")
    if names[-1] == b"":
        names.pop()
    names.reverse()
    return "/" + b"/".join(names).decode("utf-8", "surrogateescape")


def command_line(raw: bytes) -> str:
    """argv as the process's stack holds it (NUL-terminated strings), joined as a shell would quote it."""
    if not raw:
        return ""
    if raw[-1] == 0:  # the last argument ends with a NUL unless argv was truncated inside it
        raw = raw[:-1]
    return join_argv([a.decode("utf-8", "surrogateescape") for a in raw.split(b"\0")])


def split_tail(record: bytes, exe_len: int, argv_len: int, cwd_len: int) -> tuple[bytes, bytes, bytes]:
    """An exec record's raw exe, argv and cwd bytes; raises BadRecord when the lengths do not add up."""
    a = HEADER.size + exe_len
    b = a + argv_len
    end = b + cwd_len
    if end != len(record):
        raise BadRecord(f"lengths exe={exe_len} argv={argv_len} cwd={cwd_len} need {end} bytes, record has"
                        f" {len(record)}")
    return record[HEADER.size:a], record[a:b], record[b:end]


def decode(record: bytes) -> KernelProcessEvent:
    """One ring-buffer record; raises BadRecord saying what is wrong."""
    if len(record) < HEADER.size:
        raise BadRecord(f"record of {len(record)} bytes is shorter than the {HEADER.size}-byte header")
    f = HEADER.unpack_from(record)
    (ts, start, kind, pid, tid, ppid, uid, gid, euid, code, flags,
     exe_len, argv_len, cwd_len, _reserved, comm) = f[:PGID]
    pgid = f[PGID]
    fds = tuple((f[FDS + 3 * n], f[FDS + 3 * n + 1], f[FDS + 3 * n + 2]) for n in range(3))
    known = _KINDS.get(kind)
    if known is None:
        raise BadRecord(f"unknown record kind {kind}")
    exe, argv, cwd = split_tail(record, exe_len, argv_len, cwd_len)
    name = comm.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    if known is not Kind.EXEC:
        return KernelProcessEvent(known, ts, start, pid, tid, ppid, uid, gid, euid, code, flags, name,
                                  pgid=pgid, fds=fds)
    return KernelProcessEvent(known, ts, start, pid, tid, ppid, uid, gid, euid, code, flags, name,
                              path_from_leaf_first(exe), command_line(argv), path_from_leaf_first(cwd), pgid, fds)
