"""The file sensor: fanotify filesystem marks → DeviceFileEvents with the acting process."""

from __future__ import annotations

import contextlib
import logging
import os
import select
from collections import deque
from collections.abc import Hashable

from vigil.agent.budget import Gate
from vigil.agent.clock import iso
from vigil.agent.errors import SensorUnavailable
from vigil.agent.sensors import fanotify
from vigil.agent.sensors.base import HealthState, Row, SensorContext, SensorFaults, SensorHealth, SensorThread
from vigil.agent.sensors.fanotify import (
    FAN_CREATE,
    FAN_DELETE,
    FAN_MODIFY,
    FAN_Q_OVERFLOW,
    FAN_RENAME,
    FsEvent,
)

log = logging.getLogger(__name__)

_READ_BYTES = 1 << 18
_MAX_READS_PER_WAKE = 64
DROP_PATH_UNRESOLVED = "file_path_unresolved"


def _key(row: Row) -> Hashable:
    """Rows over the rate are summarised per action, process and folder."""
    return row["ActionType"], row.get("InitiatingProcessId"), os.path.dirname(row.get("FolderPath") or "")


class FileSensor:
    name = "file"

    def __init__(self, ctx: SensorContext) -> None:
        self._ctx = ctx
        cfg = ctx.config
        self._include = tuple(p.rstrip("/") + "/" if p != "/" else "/" for p in cfg.file_paths)
        self._exclude = (*cfg.file_exclude_paths, *cfg.own_paths())
        self._fd = -1
        self._resolver: fanotify.HandleResolver | None = None
        self._gate: Gate | None = None
        self._thread = SensorThread("vigil-sensor-file")
        self._health = SensorHealth(HealthState.UNAVAILABLE, "not started")
        self._own_pid = os.getpid()
        self._recent_writes: dict[tuple[int, str], float] = {}
        self._held: deque[tuple[float, int, Row]] = deque()
        self.faults = SensorFaults(log, "file sensor failed to handle an event", overflows="kernel queue overflows")
        self.events = 0

    # -- lifecycle ----------------------------------------------------------------------------

    def probe(self) -> SensorHealth:
        reason = fanotify.probe()
        return SensorHealth.active() if reason is None else SensorHealth(HealthState.UNAVAILABLE, reason)

    def start(self) -> SensorHealth:
        try:
            self._fd, self._resolver = fanotify.open_listener(tuple(self._ctx.config.file_paths))
        except SensorUnavailable as e:
            self._health = SensorHealth(HealthState.UNAVAILABLE, f"fanotify: {e}")
            return self._health
        self._gate = self._ctx.budget.gate(self.name)
        self._health = SensorHealth.active()
        self._thread.start(self._loop)
        return self._health

    def stop(self) -> None:
        self._thread.stop()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._resolver is not None:
            self._resolver.close()

    def health(self) -> SensorHealth:
        return self.faults.degrade(self._health)

    # -- the loop -----------------------------------------------------------------------------

    def _loop(self) -> None:
        assert self._gate is not None
        clock = self._ctx.clock
        delay = self._ctx.config.file_attribution_delay_seconds
        last_purge = clock.monotonic()
        while not self._thread.stopping.is_set():
            timeout = 0.2
            if self._held:
                timeout = max(0.0, min(timeout, self._held[0][0] - clock.monotonic()))
            ready, _, _ = select.select([self._fd], [], [], timeout)
            try:
                if ready:
                    rows = self._read(clock.monotonic())
                    if rows:
                        self._hold(self._gate.filter(rows, _key), clock.monotonic() + delay)
                now = clock.monotonic()
                self._hold(self._gate.flush(), now + delay)
                self._emit(now)
                if now - last_purge > 1.0:
                    self._purge(now)
                    last_purge = now
            except Exception:  # keep the sensor alive; the failure is counted and shown in health
                self.faults.failed()
            self._ctx.budget.pace()
        self._hold(self._gate.flush(force=True), 0.0)
        self._emit(float("inf"))

    def _hold(self, rows: list[Row], ready_at: float) -> None:
        for row in rows:
            self._held.append((ready_at, int(row.get("InitiatingProcessId") or 0), row))

    def _emit(self, now: float) -> None:
        out: list[Row] = []
        processes = self._ctx.processes
        while self._held and self._held[0][0] <= now:
            _ready, pid, row = self._held.popleft()
            if pid:
                row.update(processes.initiating(pid))
            out.append(row)
        if out:
            self._ctx.sink.append(out)

    def _purge(self, now: float) -> None:
        window = self._ctx.config.file_modify_window_seconds
        stale = [k for k, t in self._recent_writes.items() if now - t > window]
        for k in stale:
            del self._recent_writes[k]

    def _read(self, now: float) -> list[Row]:
        assert self._resolver is not None
        rows: list[Row] = []
        for _ in range(_MAX_READS_PER_WAKE):
            try:
                buf = os.read(self._fd, _READ_BYTES)
            except BlockingIOError:
                break
            # One timestamp per read: the events in it were all queued before it, and formatting
            # one per event cost more than the rest of the row.
            when = iso(self._ctx.clock.now())
            for ev in fanotify.parse_events(buf, self._resolver, ignore_pid=self._own_pid):
                self.events += 1
                self._on_event(ev, now, when, rows)
        return rows

    def _excluded(self, path: str) -> bool:
        return path.startswith(self._exclude) or not path.startswith(self._include)

    def _on_event(self, ev: FsEvent, now: float, when: str, rows: list[Row]) -> None:
        if ev.mask & FAN_Q_OVERFLOW:
            self.faults.overflows += 1
            assert self._gate is not None
            self._gate.overflowed()
            log.warning("file: the fanotify queue overflowed; events were lost (counted)")
            return
        if ev.is_dir:
            if ev.mask & (FAN_RENAME | FAN_DELETE) and self._resolver is not None:
                self._resolver.invalidate()  # cached paths below it may be wrong now
            return
        if ev.path is None:
            self._ctx.budget.record(DROP_PATH_UNRESOLVED, 1)
            return
        path = ev.path
        renamed_from = ev.old_path if ev.mask & FAN_RENAME else None
        if self._excluded(path) and (renamed_from is None or self._excluded(renamed_from)):
            return
        key = (ev.pid, path)
        if ev.mask & FAN_CREATE:
            rows.append(self._row("FileCreated", when, ev.pid, path))
            self._recent_writes[key] = now  # the writes that fill a new file are part of creating it
        elif ev.mask & FAN_MODIFY:
            last = self._recent_writes.get(key)
            if last is None or now - last > self._ctx.config.file_modify_window_seconds:
                rows.append(self._row("FileModified", when, ev.pid, path))
            self._recent_writes[key] = now
        if renamed_from is not None:
            row = self._row("FileRenamed", when, ev.pid, path)
            row["PreviousFileName"] = renamed_from.rpartition("/")[2]
            row["PreviousFolderPath"] = renamed_from
            rows.append(row)
        if ev.mask & FAN_DELETE:
            rows.append(self._row("FileDeleted", when, ev.pid, path, stat=False))
            self._recent_writes.pop(key, None)

    @staticmethod
    def _row(action: str, when: str, pid: int, path: str, stat: bool = True) -> Row:
        row: Row = {
            "table": "DeviceFileEvents",
            "Timestamp": when,
            "ActionType": action,
            "FileName": path.rpartition("/")[2],  # os.path.basename without its per-call overhead
            "FolderPath": path,
            "InitiatingProcessId": pid,
        }
        if stat:
            with contextlib.suppress(OSError):  # gone again already: the row stands without a size
                row["FileSize"] = os.lstat(path).st_size
        return row
