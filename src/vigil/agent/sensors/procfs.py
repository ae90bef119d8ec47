"""Reads what /proc knows about a process, plus the executable hash and user name caches."""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import shlex
import time
from collections import OrderedDict
from dataclasses import dataclass

_CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcessInfo:
    """A process image as the sensor last saw it; empty strings and -1 mean "could not be read"."""

    pid: int
    ppid: int = -1
    exe: str = ""
    command_line: str = ""
    uid: int = -1
    account: str = ""
    cwd: str = ""
    start_time: float | None = None  # epoch seconds
    sha256: str = ""

    @property
    def file_name(self) -> str:
        return self.exe.rpartition("/")[2]  # os.path.basename, without its per-call overhead

    @property
    def folder_path(self) -> str:
        return self.exe

    def forked(self, child: int, at: float) -> ProcessInfo:
        """A fresh fork runs its parent's image until it execs."""
        # Spelled out: dataclasses.replace costs several times more, once per fork on the hot path.
        return ProcessInfo(child, self.pid, self.exe, self.command_line, self.uid, self.account, self.cwd, at,
                           self.sha256)


_UNSAFE = re.compile(r"[^\w@%+=:,./-]", re.ASCII).search  # what shlex.quote quotes


def join_argv(argv: tuple[str, ...] | list[str]) -> str:
    """One command-line string from argv; quoting only where needed, so it splits back exactly
    (shlex.join, with the common unquoted argument kept off its slower path)."""
    return " ".join(a if a and _UNSAFE(a) is None else shlex.quote(a) for a in argv)


def boot_time() -> float:
    # CLOCK_BOOTTIME is what /proc/pid/stat start times count from; btime in /proc/stat is rounded.
    return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


class UserNames:
    def __init__(self) -> None:
        self._cache: dict[int, str] = {}

    def name(self, uid: int) -> str:
        if uid < 0:
            return ""
        name = self._cache.get(uid)
        if name is None:
            try:
                name = pwd.getpwuid(uid).pw_name
            except KeyError:
                name = str(uid)
            self._cache[uid] = name
        return name


class HashCache:
    """SHA-256 of files, cached by (st_dev, st_ino, st_size, st_mtime_ns) so rehashing is rare."""

    def __init__(self, max_entries: int = 8192, max_file_bytes: int = 512 << 20) -> None:
        self._cache: OrderedDict[tuple[int, int, int, int], str] = OrderedDict()
        self._max = max_entries
        self._max_bytes = max_file_bytes
        self.hits = 0
        self.misses = 0

    def sha256(self, path: str) -> str:
        """Hash of ``path``, or "" when it cannot be read (gone, too large, not a file)."""
        try:
            st = os.stat(path)  # a hit needs one stat, not open + fstat + close
        except OSError:
            return ""
        cached = self._lookup((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
        if cached is not None:
            return cached
        try:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())  # what is hashed is what was opened
                key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
                cached = self._lookup(key)
                if cached is not None:
                    return cached
                if st.st_size > self._max_bytes:
                    return ""
                digest = hashlib.file_digest(f, "sha256").hexdigest()
        except OSError:
            return ""
        self.misses += 1
        self._cache[key] = digest
        if len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return digest

    def _lookup(self, key: tuple[int, int, int, int]) -> str | None:
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            self.hits += 1
        return cached


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def read_process(pid: int, users: UserNames, hashes: HashCache, boot: float) -> ProcessInfo:
    """Best-effort snapshot: each field is read on its own, so a process that exits midway still
    yields whatever was read before it went."""
    base = f"/proc/{pid}"
    try:
        exe = os.readlink(f"{base}/exe")
    except OSError:
        exe = ""
    sha = hashes.sha256(f"{base}/exe") if exe else ""
    raw_cmd = _read(f"{base}/cmdline")
    command_line = ""
    if raw_cmd:
        argv = raw_cmd.rstrip(b"\0").split(b"\0")
        command_line = join_argv([a.decode("utf-8", "surrogateescape") for a in argv])
    uid, ppid = -1, -1
    status = _read(f"{base}/status")
    if status:
        for line in status.splitlines():
            if line.startswith(b"Uid:"):
                uid = int(line.split()[1])
            elif line.startswith(b"PPid:"):
                ppid = int(line.split()[1])
    try:
        cwd = os.readlink(f"{base}/cwd")
    except OSError:
        cwd = ""
    start: float | None = None
    stat = _read(f"{base}/stat")
    if stat:
        # comm may hold spaces and parentheses; fields resume after the last ')'.
        rest = stat[stat.rfind(b")") + 2 :].split()
        if len(rest) > 19:
            start = boot + int(rest[19]) / _CLK_TCK
    return ProcessInfo(
        pid=pid,
        ppid=ppid,
        exe=exe.removesuffix(" (deleted)"),
        command_line=command_line,
        uid=uid,
        account=users.name(uid),
        cwd=cwd,
        start_time=start,
        sha256=sha,
    )
