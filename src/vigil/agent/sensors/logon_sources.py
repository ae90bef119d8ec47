"""Where logons come from without audit: the journal (through journalctl), an auth log, wtmp/btmp files."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Generic, TypeVar

from vigil.agent.sensors.utmp import RECORD_SIZE, UtmpRecord, parse_records

T = TypeVar("T")

JOURNAL_SOCKET = Path("/run/systemd/journal/socket")
# Facilities auth (4) and authpriv (10) are exactly what syslog writes to auth.log, so the journal
# and auth.log carry the same messages and one parser reads both; journalctl filters, not Python.
JOURNAL_MATCHES = ("SYSLOG_FACILITY=4", "SYSLOG_FACILITY=10")


# How many of the last bytes read are checked again before each read: when they changed, the file was
# truncated and written again (copytruncate) even if it is already as long as before.
_TAIL_BYTES = 512  # more than one utmp record


class AppendedBytes:
    """What was appended to a file since the last read, surviving rotation (a new inode) and truncation.

    Opening skips to the end (history is not news), rounded down to ``align`` so that a fixed-size
    record still being written at that moment is read whole rather than leaving the reader out of step."""

    def __init__(self, path: Path, align: int = 1) -> None:
        self.path = path
        self._f = open(path, "rb")  # noqa: SIM115 - kept open while following
        st = os.fstat(self._f.fileno())
        start = st.st_size - st.st_size % align
        self._f.seek(start)
        self._ino = st.st_ino
        self._tail = os.pread(self._f.fileno(), min(start, _TAIL_BYTES), max(0, start - _TAIL_BYTES))

    def close(self) -> None:
        self._f.close()

    def read(self) -> list[bytes]:
        """One chunk per file read: the first continues the previous read, each later one starts a file anew
        (an empty first chunk: the file was truncated, and what was pending of it will never complete)."""
        chunks = []
        if self._rewritten():
            chunks.append(b"")
            self._f.seek(0)
            self._tail = b""
        chunks.append(self._take())
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return chunks  # between rotation and re-creation
        if st.st_ino != self._ino:
            self._f.close()
            self._f = open(self.path, "rb")  # noqa: SIM115 - the rotated-in file, from its start
            self._ino = st.st_ino
            self._tail = b""
            chunks.append(self._take())
        return chunks

    def _take(self) -> bytes:
        data = self._f.read()
        if data:
            self._tail = (self._tail + data)[-_TAIL_BYTES:]
        return data

    def _rewritten(self) -> bool:
        fd, pos = self._f.fileno(), self._f.tell()
        if os.fstat(fd).st_size < pos:
            return True
        return bool(self._tail) and os.pread(fd, len(self._tail), pos - len(self._tail)) != self._tail


class _Follower(Generic[T]):
    """Whole items (lines, records) appended to a file; ``split`` returns the items and an unfinished rest."""

    def __init__(self, path: Path, split: Callable[[bytes], tuple[list[T], bytes]], align: int = 1) -> None:
        self.path = path
        self._bytes = AppendedBytes(path, align)
        self._split = split
        self._partial = b""

    def close(self) -> None:
        self._bytes.close()

    def _items(self) -> list[T]:
        out: list[T] = []
        for i, chunk in enumerate(self._bytes.read()):
            if i:
                self._partial = b""  # the unfinished end of a replaced file stays unfinished
            items, self._partial = self._split(self._partial + chunk)
            out += items
        return out


def _split_lines(data: bytes) -> tuple[list[str], bytes]:
    *complete, rest = data.split(b"\n")
    return [c.decode("utf-8", "replace") for c in complete if c], rest


class AuthLogFollower(_Follower[str]):
    """Lines appended to an auth log, like tail -F."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, _split_lines)

    def lines(self) -> list[str]:
        return self._items()


class UtmpFollower(_Follower[UtmpRecord]):
    """utmp records appended to wtmp or btmp."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, parse_records, align=RECORD_SIZE)

    def records(self) -> list[UtmpRecord]:
        return self._items()


# journalctl rather than the systemd-python binding: that is published only as source that compiles
# against libsystemd-dev, so every agent install would need a C toolchain for one fallback source.
def journalctl_command(journalctl: str = "journalctl") -> list[str]:
    """journalctl following new auth/authpriv entries as one JSON object per line."""
    return [journalctl, "--follow", "--lines=0", "--output=json", "--no-pager", "--quiet", *JOURNAL_MATCHES]


def journald_unusable(socket: Path = JOURNAL_SOCKET) -> str | None:
    """Why the journal cannot be followed here, or None. journalctl waits silently when journald is not
    running (containers without systemd as PID 1), so journald's own socket is the test."""
    if shutil.which("journalctl") is None:
        return "journalctl is not installed"
    if not socket.is_socket():
        return f"journald is not running: no {socket}"
    return None


class JournalFollower:
    """A journalctl child process; ``lines`` blocks until the next entry and ends when journalctl exits."""

    def __init__(self, command: Sequence[str]) -> None:
        self.command = list(command)
        self._proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE)

    def lines(self) -> Iterator[bytes]:
        assert self._proc.stdout is not None
        yield from self._proc.stdout

    def terminate(self) -> None:
        """End journalctl, which ends ``lines`` on the reading thread."""
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def exit_reason(self) -> str:
        """What journalctl said when it stopped on its own (its stderr is read only then: it writes little)."""
        code = self._proc.wait()
        assert self._proc.stderr is not None
        said = self._proc.stderr.read().decode("utf-8", "replace").strip().splitlines()
        return f"journalctl exited with status {code}" + (f": {said[-1]}" if said else "")

    def close(self) -> None:
        """After the reading thread has finished: end the process and release its pipes."""
        self.terminate()
        for pipe in (self._proc.stdout, self._proc.stderr):
            if pipe is not None:
                pipe.close()
