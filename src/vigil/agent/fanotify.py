"""The on-access gate: one fanotify permission group on the chosen mounts, whose verdicts come from decision hooks.

The seam for every on-access check (the antivirus today; file-hash indicators and ASR rules may plug in):

- a hook is any object with ``name``, ``kinds`` (the ``AccessKind`` values it wants) and
  ``decide(access) -> Decision``; ``Decision.ALLOW`` means "no objection", so hooks compose: one DENY denies;
- a hook may also have ``allows_quickly(fd) -> bool``, run on the reader thread before anything else (before the
  path is read): True when it knows from memory (a verdict cache, an ``fstat``; never more I/O) that the file
  is harmless. When every interested hook says so, the opener is answered without a thread hand-off; False
  sends the access on to ``decide``;
- ``decide`` runs on a worker thread with the opener waiting (for permission kinds); ``access.fd`` is the file
  the kernel opened for us, readable with ``os.pread`` or after ``os.dup``, valid until ``decide`` returns; the
  hook must not close it. A hook reports what it found itself (its own sink); the gate only answers the kernel;
- a hook that raises counts in ``hook_errors`` and does not object; a hook slower than ``budget_seconds`` is not
  waited for: the gate answers ALLOW (``failed_open``) and starts another worker, so a hung hook never hangs
  openers. The gate never blocks its own process, nor anything under ``never_block``.

Closing the group (``stop``) lets every pending and future access through: the kernel allows what no group
answers once the group is gone. ``FAN_CLOSE_WRITE`` arrives as a notification (nobody waits) and runs the
same hooks, for scanning what was just written.

Limits: ``FAN_OPEN_EXEC_PERM`` sees ``execve`` of a file, not ``sh file`` or ``ld.so file`` (those are plain
opens, seen only with ``open_perm``); files on unmarked mounts are not seen; marks are per mount, so a bind
mount of a marked file system elsewhere is not covered.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import struct
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from vigil.agent.sensors.fanotify import (
    FAN_ALLOW,
    FAN_CLASS_CONTENT,
    FAN_CLOEXEC,
    FAN_CLOSE_WRITE,
    FAN_DENY,
    FAN_MARK_ADD,
    FAN_MARK_MOUNT,
    FAN_OPEN_EXEC_PERM,
    FAN_Q_OVERFLOW,
    FAN_UNLIMITED_QUEUE,
    METADATA,
    fanotify_init,
    mark,
)

log = logging.getLogger(__name__)

FAN_OPEN_PERM = 0x00010000
_RESPONSE = struct.Struct("=iI")
_PERMISSION = FAN_OPEN_PERM | FAN_OPEN_EXEC_PERM
# File systems programs and documents live on; the others are kernel views or remote.
LOCAL_FS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "overlay", "vfat", "exfat", "zfs", "f2fs"})


class AccessKind(StrEnum):
    OPEN = "open"  # FAN_OPEN_PERM: the opener waits
    EXEC = "exec"  # FAN_OPEN_EXEC_PERM: the exec waits
    CLOSE_WRITE = "close_write"  # FAN_CLOSE_WRITE: a notification, after the fact


class Decision(StrEnum):
    ALLOW = "allow"
    DENY = "deny"


@dataclass(frozen=True)
class Access:
    kind: AccessKind
    path: str
    pid: int  # the process that opened, executed or wrote
    fd: int  # the file, opened by the kernel for the gate (see the module docstring)

    @property
    def waits(self) -> bool:
        return self.kind is not AccessKind.CLOSE_WRITE


class DecisionHook(Protocol):
    name: str
    kinds: frozenset[AccessKind]

    def decide(self, access: Access) -> Decision: ...


@dataclass(frozen=True)
class GateSettings:
    marks: tuple[str, ...]  # mount points
    open_perm: bool = False  # also gate plain opens (costly: every open on the marks waits for an answer)
    close_write: bool = True
    budget_seconds: float = 0.25  # after this, a waiting access is allowed (fail open) and counted
    workers: int = 2
    max_workers: int = 16  # replacements for hung workers stop here
    never_block: tuple[str, ...] = ()  # path prefixes always allowed at once (the agent's state, spool, quarantine)


@dataclass
class GateCounters:
    events: int = 0
    allowed: int = 0
    denied: int = 0
    failed_open: int = 0  # answered ALLOW because the hooks overran the budget
    hook_errors: int = 0
    overflows: int = 0
    unresolved: int = 0  # the path could not be read; allowed

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def local_mounts(mounts: Path = Path("/proc/self/mounts")) -> list[str]:
    out = []
    for line in mounts.read_text().splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[2] in LOCAL_FS:
            out.append(parts[1].replace("\\040", " "))
    return out


@dataclass
class _Job:
    kind: AccessKind
    fd: int  # the event's descriptor: the reply names it; closed when answered
    work_fd: int  # a duplicate the hooks read, so an answer on time-out cannot pull the file from under them
    path: str
    pid: int
    deadline: float
    answered: bool = False


@dataclass
class _Workers:
    threads: list[threading.Thread] = field(default_factory=list)
    idle: int = 0


class AccessGate:
    """Reads the group on one thread, decides on a few workers, answers late accesses from a watchdog."""

    def __init__(self, settings: GateSettings, hooks: Sequence[DecisionHook]) -> None:
        self.settings = settings
        self.hooks = list(hooks)
        self.counters = GateCounters()
        self._own_pid = os.getpid()
        self._never = tuple(settings.never_block)
        self._fd = -1
        self._lock = threading.Lock()
        self._pending: dict[int, _Job] = {}
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._workers = _Workers()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.error: str | None = None  # why the reader stopped, when it did on its own

    @property
    def mask(self) -> int:
        m = FAN_OPEN_EXEC_PERM
        if self.settings.open_perm:
            m |= FAN_OPEN_PERM
        if self.settings.close_write:
            m |= FAN_CLOSE_WRITE
        return m

    def _wants(self, kind: AccessKind) -> bool:
        return any(kind in h.kinds for h in self.hooks)

    # -- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Raises OSError when the kernel refuses the group or a mark (the caller reports it)."""
        fd = fanotify_init(FAN_CLOEXEC | FAN_CLASS_CONTENT | FAN_UNLIMITED_QUEUE)
        try:
            for m in self.settings.marks:
                mark(fd, FAN_MARK_ADD | FAN_MARK_MOUNT, self.mask, m)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd
        for _ in range(max(1, self.settings.workers)):
            self._spawn_worker()
        for target, name in ((self._read_loop, "vigil-rtp-reader"), (self._watchdog, "vigil-rtp-watchdog")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(2)
        self._threads.clear()
        with self._lock:
            for job in list(self._pending.values()):
                self._answer(job, FAN_ALLOW)
        for _ in self._workers.threads:
            self._jobs.put(None)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    @property
    def running(self) -> bool:
        return self._fd >= 0 and self.error is None

    # -- the reader -----------------------------------------------------------------------------------------
    def _read_loop(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        while not self._stop.is_set():
            try:
                # A timeout, so that stop() is noticed: closing an fd does not wake a blocked read.
                if not poller.poll(200):
                    continue
                buf = os.read(self._fd, 256 * METADATA.size)
            except (OSError, ValueError) as e:
                if not self._stop.is_set():
                    self.error = f"stopped reading fanotify events: {e}"
                    log.error("on-access gate %s; accesses are no longer checked", self.error)
                return
            self._dispatch(buf)

    def _dispatch(self, buf: bytes) -> None:
        off = 0
        while off + METADATA.size <= len(buf):
            length, _, _, _, mask, fd, pid = METADATA.unpack_from(buf, off)
            off += length or METADATA.size
            self.counters.events += 1
            if mask & FAN_Q_OVERFLOW:
                self.counters.overflows += 1
            if fd < 0:
                continue
            kind = (AccessKind.EXEC if mask & FAN_OPEN_EXEC_PERM else AccessKind.OPEN if mask & FAN_OPEN_PERM
                    else AccessKind.CLOSE_WRITE)
            waits = bool(mask & _PERMISSION)
            if pid == self._own_pid or not self._wants(kind) or (waits and self._known_clean(kind, fd)):
                self._quick(fd, waits)
                continue
            try:
                path = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                self.counters.unresolved += 1
                self._quick(fd, waits)
                continue
            if path.startswith(self._never):
                self._quick(fd, waits)
                continue
            try:
                work_fd = os.dup(fd)
            except OSError:
                self._quick(fd, waits)
                continue
            job = _Job(kind, fd, work_fd, path, pid, time.monotonic() + self.settings.budget_seconds)
            if waits:
                with self._lock:
                    self._pending[fd] = job
            self._jobs.put(job)

    def _known_clean(self, kind: AccessKind, fd: int) -> bool:
        """True when every interested hook vouches for the file from memory (``allows_quickly``), on the reader
        thread, before its path is even read; then the opener is answered without a thread hand-off."""
        for hook in self.hooks:
            if kind not in hook.kinds:
                continue
            quick = getattr(hook, "allows_quickly", None)
            try:
                if quick is None or not quick(fd):
                    return False
            except Exception:  # a quick path's bug: let the full decision run
                self.counters.hook_errors += 1
                log.exception("on-access hook %s failed its quick check", hook.name)
                return False
        return True

    def _quick(self, fd: int, waits: bool) -> None:
        if waits:
            self.counters.allowed += 1
            self._reply(fd, FAN_ALLOW)
        os.close(fd)

    def _reply(self, fd: int, response: int) -> None:
        with contextlib.suppress(OSError):  # the group is closing: the kernel allows on its own
            os.write(self._fd, _RESPONSE.pack(fd, response))

    def _answer(self, job: _Job, response: int) -> None:
        """Reply once and close the event's fd; callers hold the lock."""
        if job.answered:
            return
        job.answered = True
        self._pending.pop(job.fd, None)
        if response == FAN_DENY:
            self.counters.denied += 1
        else:
            self.counters.allowed += 1
        self._reply(job.fd, response)
        os.close(job.fd)

    # -- workers and the watchdog ---------------------------------------------------------------------------
    def _spawn_worker(self) -> None:
        t = threading.Thread(target=self._work, name=f"vigil-rtp-worker-{len(self._workers.threads)}",
                             daemon=True)
        self._workers.threads.append(t)
        t.start()

    def _work(self) -> None:
        while True:
            with self._lock:
                self._workers.idle += 1
            job = self._jobs.get()
            with self._lock:
                self._workers.idle -= 1
            if job is None:
                return
            try:
                decision = self._decide(job)
            finally:
                os.close(job.work_fd)
            if job.kind is AccessKind.CLOSE_WRITE:
                os.close(job.fd)
                continue
            with self._lock:
                self._answer(job, FAN_DENY if decision is Decision.DENY else FAN_ALLOW)

    def _decide(self, job: _Job) -> Decision:
        access = Access(job.kind, job.path, job.pid, job.work_fd)
        decision = Decision.ALLOW
        for hook in self.hooks:
            if job.kind not in hook.kinds:
                continue
            try:
                if hook.decide(access) is Decision.DENY:
                    decision = Decision.DENY
            except Exception:  # a hook's bug must not deny, nor stop the gate
                with self._lock:
                    self.counters.hook_errors += 1
                log.exception("on-access hook %s failed on %s", hook.name, job.path)
        return decision

    def _watchdog(self) -> None:
        tick = max(0.005, self.settings.budget_seconds / 5)
        while not self._stop.wait(tick):
            now = time.monotonic()
            with self._lock:
                late = [j for j in self._pending.values() if j.deadline <= now]
                for job in late:
                    self.counters.failed_open += 1
                    self._answer(job, FAN_ALLOW)
                stuck = late and self._workers.idle == 0
                if stuck and len(self._workers.threads) < self.settings.max_workers:
                    self._spawn_worker()
            if late:
                log.warning("on-access gate: %d access(es) allowed unchecked after %.0f ms (fail open)",
                            len(late), self.settings.budget_seconds * 1000)


def with_prefixes(paths: Iterable[str]) -> tuple[str, ...]:
    """Prefixes for ``never_block``: folders end in '/', so /var/lib/vigil does not cover /var/lib/vigilant."""
    out = []
    for p in paths:
        p = os.path.abspath(p)
        out.append(p if os.path.isfile(p) else p.rstrip("/") + "/")
    return tuple(out)
