"""The process sensor's eBPF provider: tp_btf exec/fork/exit records from process.bpf.o, fed to the tracker."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from vigil.agent.sensors.base import Row
from vigil.agent.sensors.bpf_events import (
    ARGV_TRUNCATED,
    FDS,
    HEADER,
    PGID,
    BadRecord,
    Kind,
    command_line,
    decode,
    path_from_leaf_first,
    split_tail,
)
from vigil.agent.sensors.libbpf import EventSource
from vigil.agent.sensors.pipeline import PipelineJoiner, Stdio, describe_fd
from vigil.agent.sensors.proc_connector import ExitEvent
from vigil.agent.sensors.process_tracker import ProcessTracker
from vigil.agent.sensors.procfs import HashCache, ProcessInfo

OBJECT_NAME = "process.bpf.o"
# The shipped CO-RE object, where `make bpf` also rebuilds it (relocated against the running kernel's BTF at load).
DEFAULT_OBJECT = Path(__file__).resolve().parent / "bpf" / OBJECT_NAME

_EXEC, _FORK, _EXIT = Kind.EXEC.value, Kind.FORK.value, Kind.EXIT.value
_PATH_CACHE_ENTRIES = 4096  # distinct executable and working-directory paths remembered


def boottime_offset() -> float:
    """Epoch seconds at CLOCK_BOOTTIME zero."""
    return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


class BpfProcessSource(EventSource):
    """process.bpf.o loaded, its three programs attached and its ring buffer open."""

    def __init__(self, path: Path | None = None) -> None:
        super().__init__(path or DEFAULT_OBJECT)


class KernelRows:
    """Turns batches of process.bpf.c records into DeviceProcessEvents rows through a ProcessTracker.

    This runs once per record on the sensor's thread, so it skips what the general decoder does
    for clarity: no event object per record, the boot-time offset taken once per batch (NTP moves
    the wall clock, so not once for all), and paths decoded once per distinct path."""

    def __init__(self, *, exit_events: bool, read: Callable[[int], ProcessInfo] | None = None,
                 hashes: HashCache | None = None) -> None:
        self._offset = boottime_offset()
        self.tracker = ProcessTracker(use_proc=True, use_audit=False, audit_wait=0.0, exit_events=exit_events,
                                      read=read, hashes=hashes, wall_from_ns=self.wall)
        self._paths: dict[bytes, str] = {}
        self.pipelines = PipelineJoiner()

    def wall(self, boottime_ns: int) -> float:
        return self._offset + boottime_ns / 1e9

    def _path(self, raw: bytes) -> str:
        path = self._paths.get(raw)
        if path is None:
            if len(self._paths) >= _PATH_CACHE_ENTRIES:
                self._paths.clear()
            path = self._paths[raw] = path_from_leaf_first(raw)
        return path

    def feed(self, records: list[bytes], now: float) -> tuple[list[Row], list[BadRecord]]:
        """Rows for a batch of records, in order; malformed records are returned, not raised, so the
        rest of the batch still counts."""
        rows: list[Row] = []
        bad: list[BadRecord] = []
        self._offset = offset = boottime_offset()
        tracker = self.tracker
        size, unpack = HEADER.size, HEADER.unpack_from
        name, sha256, path = tracker.users.name, tracker.hashes.sha256, self._path
        for rec in records:
            if len(rec) < size:
                bad.append(BadRecord(f"record of {len(rec)} bytes is shorter than the {size}-byte header"))
                continue
            f = unpack(rec)
            kind = f[2]
            if kind == _EXEC:
                try:
                    exe_raw, argv_raw, cwd_raw = split_tail(rec, f[11], f[12], f[13])
                except BadRecord as e:
                    bad.append(e)
                    continue
                exe = path(exe_raw)
                uid = f[6]
                info = ProcessInfo(f[3], f[5], exe, command_line(argv_raw), uid, name(uid), path(cwd_raw),
                                   offset + f[1] / 1e9, sha256(exe) if exe else "")
                row = tracker.on_described_exec(info, offset + f[0] / 1e9, now)
                if f[10] & ARGV_TRUNCATED:
                    row["AdditionalFields"]["CommandLineTruncated"] = True
                stdin, stdout, stderr = _stdio(f)
                row["ProcessGroupId"] = f[PGID] or None
                row["ProcessStdin"], row["ProcessStdout"], row["ProcessStderr"] = str(stdin), str(stdout), str(stderr)
                self.pipelines.executed(row, f[5], f[PGID], stdin, stdout, now)
                rows.append(row)
            elif kind == _FORK and len(rec) == size:
                tracker.forked(f[3], f[5], f[0])
            elif kind == _EXIT and len(rec) == size:
                stdin, stdout, _ = _stdio(f)
                comm = f[15].split(b"\0", 1)[0].decode("utf-8", "replace")
                self.pipelines.exited(f[3], f[5], f[PGID], stdin, stdout, comm, now, execed=tracker.reported(f[3]))
                rows += tracker.on_exit(ExitEvent(f[0], f[3], f[3], f[9], 0), now)
            else:
                try:
                    decode(rec)  # says what is wrong with it
                    bad.append(BadRecord(f"unexpected {kind} record of {len(rec)} bytes"))
                except BadRecord as e:
                    bad.append(e)
        return rows, bad


def _stdio(f: tuple[int | bytes, ...]) -> tuple[Stdio, Stdio, Stdio]:
    """fds 0, 1 and 2 of an unpacked header."""
    fd = [describe_fd(int(f[FDS + 3 * n + 2]), int(f[FDS + 3 * n]), int(f[FDS + 3 * n + 1])) for n in range(3)]
    return fd[0], fd[1], fd[2]
