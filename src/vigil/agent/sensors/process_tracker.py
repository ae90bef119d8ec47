"""Joins proc-connector fork/exec/exit events with audit exec records into DeviceProcessEvents rows."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache

from vigil.agent.clock import iso
from vigil.agent.sensors.audit_records import ExecRecord
from vigil.agent.sensors.base import Row
from vigil.agent.sensors.proc_connector import ExecEvent, ExitEvent, ForkEvent
from vigil.agent.sensors.procfs import HashCache, ProcessInfo, UserNames, boot_time, join_argv, read_process

# How long a dead process stays known, so late rows of its children can still describe it.
_DEAD_RETENTION_SECONDS = 30.0
# How long an exec reported without its partner (audit record or proc-connector event) is
# remembered, so the partner arriving later is recognised and not reported a second time.
_LATE_PARTNER_SECONDS = 30.0
# An audit record's time is the execve's entry, read from the coarse clock (jiffies) in ms;
# the proc connector's is the exec's completion. Same exec when the audit time lies within
# [exec - _LEAD, exec + _LAG]: the lead covers a slow exec, the lag clock granularity and skew.
_LEAD = 2.0
_LAG = 0.05
# With audit on, /proc is read for an exec only if its audit record has not come by then: audit
# answers exe, argv, cwd, uid and ppid, and /proc reads are the tracker's dearest work.
_SNAPSHOT_GRACE_SECONDS = 0.03


@dataclass(slots=True)
class _PendingExec:
    """An exec waiting for its audit record (internal bookkeeping: the snapshot is filled late)."""

    pid: int
    deadline: float
    snapshot_at: float
    wall: float  # when the exec happened, epoch seconds
    snapshot: ProcessInfo | None = None
    done: bool = False


@dataclass(slots=True)
class _PendingAudit:
    deadline: float
    record: ExecRecord
    done: bool = False


# A process's creation time is formatted again for each of its rows and for each of its children's.
_start_iso = lru_cache(maxsize=4096)(iso)


def _wall_from_monotonic_ns(ns: int) -> float:
    # The offset is taken afresh: a long-running agent sees NTP move the wall clock, and pairing
    # compares these times with audit's wall-clock ones.
    return time.time() - time.monotonic() + ns / 1e9


def _same_exec(exec_wall: float, audit_time: float) -> bool:
    return exec_wall - _LEAD <= audit_time <= exec_wall + _LAG


class ProcessTracker:
    """Pure bookkeeping, no sockets: feed it events with the current monotonic time, get rows back.

    With both sources on, an exec seen by the proc connector waits up to ``audit_wait`` for the
    matching audit record (same pid, in order, at a compatible time), because /proc reads lose the
    race against short-lived processes while audit carries argv, exe and cwd even after the process
    is gone. Each exec is reported exactly once: a partner that arrives after its exec was reported
    alone is recognised (pid and time) and dropped, and counted in ``late``.
    """

    def __init__(
        self,
        *,
        use_proc: bool,
        use_audit: bool,
        audit_wait: float,
        exit_events: bool,
        users: UserNames | None = None,
        hashes: HashCache | None = None,
        read: Callable[[int], ProcessInfo] | None = None,
        wall_from_ns: Callable[[int], float] | None = None,
        snapshot_grace: float = _SNAPSHOT_GRACE_SECONDS,
    ) -> None:
        self.use_proc = use_proc
        self.use_audit = use_audit
        self.audit_wait = audit_wait
        self.exit_events = exit_events
        self.snapshot_grace = min(snapshot_grace, audit_wait)
        self.users = users or UserNames()
        self.hashes = hashes or HashCache()
        boot = boot_time()
        self._read = read or (lambda pid: read_process(pid, self.users, self.hashes, boot))
        self._wall = wall_from_ns or _wall_from_monotonic_ns
        self._infos: dict[int, ProcessInfo] = {}
        self._reported: set[int] = set()  # pids with a ProcessCreated row, so exits are worth reporting
        self._dying: dict[int, float] = {}  # insertion order is deadline order: re-inserted on update
        self._pending_exec: dict[int, deque[_PendingExec]] = {}
        self._pending_audit: dict[int, deque[_PendingAudit]] = {}
        self._pending_exit: dict[int, ExitEvent] = {}
        # The same entries in arrival order: every wait is the same length, so the heads expire first.
        self._exec_order: deque[_PendingExec] = deque()
        self._snapshot_order: deque[_PendingExec] = deque()
        self._audit_order: deque[_PendingAudit] = deque()
        # Execs reported alone: pid → exec times (proc connector) or audit times, and when to forget.
        self._alone_execs: dict[int, deque[float]] = {}
        self._alone_audits: dict[int, deque[float]] = {}
        self._alone_order: deque[tuple[float, bool, int]] = deque()
        self.rows_from = {"audit+procfs": 0, "procfs": 0, "audit": 0, "ebpf": 0}
        self.late = {"audit": 0, "exec": 0}  # partners that came after their exec was reported
        self._now = 0.0  # the monotonic time of the latest input

    # -- inputs -------------------------------------------------------------------------------

    def on_fork(self, ev: ForkEvent) -> None:
        if ev.child_pid != ev.child_tgid:
            return  # a new thread, not a process
        self.forked(ev.child_tgid, ev.parent_tgid, ev.timestamp_ns)

    def forked(self, child: int, parent_tgid: int, timestamp_ns: int) -> None:
        """A new process (not a thread); it runs its parent's image until it execs."""
        self._dying.pop(child, None)
        self._reported.discard(child)
        parent = self._infos.get(parent_tgid)
        if parent is not None:
            self._infos[child] = parent.forked(child, self._wall(timestamp_ns))
        else:
            self._infos[child] = ProcessInfo(pid=child, ppid=parent_tgid, start_time=self._wall(timestamp_ns))

    def on_exec(self, ev: ExecEvent, now: float) -> list[Row]:
        self._now = now
        pid = ev.tgid
        wall = self._wall(ev.timestamp_ns)
        if not self.use_audit:
            return [self._created(_PendingExec(pid, now, now, wall, self._read(pid)), None)]
        if self._late_partner(self._alone_audits, pid, lambda t: _same_exec(wall, t)):
            self.late["exec"] += 1
            return []
        rows: list[Row] = []
        waiting = self._pending_audit.get(pid)
        while waiting:
            pa = waiting[0]
            if pa.record.timestamp > wall + _LAG:
                break  # the record is of a later exec; this one's was lost: it waits and goes alone
            self._pop_audit(pid, waiting)
            if pa.record.timestamp >= wall - _LEAD:
                rows.append(self._created(_PendingExec(pid, now, now, wall), pa.record))
                return self._with_exit(pid, rows)
            rows.append(self._created(None, pa.record))  # of an earlier exec whose event was lost
            waiting = self._pending_audit.get(pid)
        pe = _PendingExec(pid, now + self.audit_wait, now + self.snapshot_grace, wall)
        self._pending_exec.setdefault(pid, deque()).append(pe)
        self._exec_order.append(pe)
        self._snapshot_order.append(pe)
        return rows

    def on_audit(self, rec: ExecRecord, now: float) -> list[Row]:
        self._now = now
        if not self.use_proc:
            return [self._created(None, rec)]
        pid = rec.pid
        if self._late_partner(self._alone_execs, pid, lambda wall: _same_exec(wall, rec.timestamp)):
            self.late["audit"] += 1
            return []
        rows: list[Row] = []
        waiting = self._pending_exec.get(pid)
        while waiting:
            pe = waiting[0]
            if pe.wall > rec.timestamp + _LEAD:
                break  # the record is of an earlier exec whose event was lost
            self._pop_exec(pid, waiting)
            if pe.wall >= rec.timestamp - _LAG:
                rows.append(self._created(pe, rec))
                return self._with_exit(pid, rows)
            # An exec from before this record's syscall: records of one process come in order,
            # so its own record was lost. It goes alone now, without waiting out its deadline.
            rows.append(self._created(pe, None))
            waiting = self._pending_exec.get(pid)
        if waiting:
            return [*rows, self._created(None, rec)]
        pa = _PendingAudit(now + self.audit_wait, rec)
        self._pending_audit.setdefault(pid, deque()).append(pa)
        self._audit_order.append(pa)
        return self._with_exit(pid, rows)

    def reported(self, pid: int) -> bool:
        """Whether the process has had a ProcessCreated row (it exec'd while the sensor watched)."""
        return pid in self._reported

    def on_described_exec(self, info: ProcessInfo, when: float, now: float) -> Row:
        """An exec the kernel described in full (the eBPF provider): nothing to wait for or read."""
        self._now = now
        return self._created_row(info, when, "ebpf")

    def on_exit(self, ev: ExitEvent, now: float) -> list[Row]:
        if ev.pid != ev.tgid:
            return []  # a thread ended, the process lives on
        pid = ev.tgid
        self._dying.pop(pid, None)
        self._dying[pid] = now + _DEAD_RETENTION_SECONDS
        if pid in self._pending_exec:
            self._pending_exit[pid] = ev  # report the exit after the exec it follows
            return []
        return self._terminated(ev)

    def expire(self, now: float) -> list[Row]:
        """Emit execs whose partner never came, and forget processes dead for a while."""
        self._now = now
        rows: list[Row] = []
        snapshots = self._snapshot_order
        while snapshots and snapshots[0].snapshot_at <= now:
            pe = snapshots.popleft()
            if not pe.done:
                pe.snapshot = self._read(pe.pid)
        order = self._exec_order
        while order and order[0].deadline <= now:
            pe = order.popleft()
            if pe.done:
                continue
            self._pop_exec(pe.pid, self._pending_exec[pe.pid])
            rows.append(self._created(pe, None))
            rows += self._with_exit(pe.pid, [])
        audits = self._audit_order
        while audits and audits[0].deadline <= now:
            pa = audits.popleft()
            if pa.done:
                continue
            self._pop_audit(pa.record.pid, self._pending_audit[pa.record.pid])
            rows.append(self._created(None, pa.record))
        dying = self._dying
        while dying:
            pid, at = next(iter(dying.items()))
            if at > now:
                break
            del dying[pid]
            self._infos.pop(pid, None)
            self._reported.discard(pid)
        alone = self._alone_order
        while alone and alone[0][0] <= now:
            _at, is_exec, pid = alone.popleft()
            table = self._alone_execs if is_exec else self._alone_audits
            times = table.get(pid)
            if times:
                times.popleft()
                if not times:
                    del table[pid]
        return rows

    def next_deadline(self) -> float | None:
        heads = [q[0].snapshot_at for q in (self._snapshot_order,) if q]
        heads += [q[0].deadline for q in (self._exec_order, self._audit_order) if q]
        return min(heads) if heads else None

    def pending(self) -> int:
        return sum(map(len, self._pending_exec.values())) + sum(map(len, self._pending_audit.values()))

    def known(self) -> int:
        return len(self._infos)

    def info(self, pid: int) -> ProcessInfo | None:
        """What the tracker knows of ``pid``; read from other sensors' threads, so no mutation here.

        While an exec waits for its audit record, the known image is the parent's (from the fork),
        so the /proc snapshot taken for the exec is returned instead, or None (read /proc) without one.
        """
        try:
            waiting = self._pending_exec.get(pid)
            if waiting:
                snap = waiting[-1].snapshot
                return snap if snap is not None and snap.exe else None
        except IndexError:  # emptied by the sensor thread meanwhile
            pass
        return self._infos.get(pid)

    # -- pairing bookkeeping ------------------------------------------------------------------

    def _pop_exec(self, pid: int, waiting: deque[_PendingExec]) -> None:
        waiting.popleft().done = True
        if not waiting:
            del self._pending_exec[pid]

    def _pop_audit(self, pid: int, waiting: deque[_PendingAudit]) -> None:
        waiting.popleft().done = True
        if not waiting:
            del self._pending_audit[pid]

    def _remember_alone(self, is_exec: bool, pid: int, when: float) -> None:
        if not (self.use_proc and self.use_audit):
            return  # with one source there is no partner to wait for
        table = self._alone_execs if is_exec else self._alone_audits
        table.setdefault(pid, deque()).append(when)
        self._alone_order.append((self._now + _LATE_PARTNER_SECONDS, is_exec, pid))

    @staticmethod
    def _late_partner(table: dict[int, deque[float]], pid: int, same: Callable[[float], bool]) -> bool:
        """Whether this is the partner of an exec already reported alone; consumes that entry.
        Entries before the match are dropped: partners of one process arrive in order."""
        times = table.get(pid)
        if not times:
            return False
        for i, when in enumerate(times):
            if same(when):
                for _ in range(i + 1):
                    times.popleft()
                if not times:
                    del table[pid]
                return True
        return False

    # -- rows ---------------------------------------------------------------------------------

    def _with_exit(self, pid: int, rows: list[Row]) -> list[Row]:
        ev = self._pending_exit.pop(pid, None) if pid not in self._pending_exec else None
        return rows + self._terminated(ev) if ev is not None else rows

    def _describe(self, pid: int) -> ProcessInfo | None:
        if pid <= 0:
            return None
        info = self._infos.get(pid)
        if info is None:
            info = self._infos[pid] = self._read(pid)
        elif not info.exe:  # known only from its fork; its image is worth one /proc read
            read = self._read(pid)
            if read.exe:
                info = self._infos[pid] = replace(read, start_time=info.start_time or read.start_time)
        return info

    def _merge(self, pe: _PendingExec | None, rec: ExecRecord | None) -> tuple[ProcessInfo, float, str]:
        if pe is not None and rec is None and pe.snapshot is None:
            pe.snapshot = self._read(pe.pid)  # going alone before its grace ran out
        snap = pe.snapshot if pe else None
        pid = rec.pid if rec else pe.pid if pe else -1
        forked = self._infos.get(pid)
        # The fork event's time is exact; /proc's start time has clock-tick (10 ms) resolution.
        start = (forked.start_time if forked else None) or (snap.start_time if snap else None)
        if rec is None:
            assert snap is not None and pe is not None
            ppid = snap.ppid if snap.ppid > 0 else forked.ppid if forked else -1
            info = replace(snap, ppid=ppid, start_time=start or pe.wall)
            return info, pe.wall, "procfs"
        sha = snap.sha256 if snap and snap.exe == rec.exe and snap.sha256 else self.hashes.sha256(rec.exe)
        info = ProcessInfo(
            pid=rec.pid,
            ppid=rec.ppid,
            exe=rec.exe,
            command_line=join_argv(rec.argv),
            uid=rec.uid,
            account=self.users.name(rec.uid),
            cwd=rec.cwd,
            start_time=start or (pe.wall if pe else rec.timestamp),
            sha256=sha,
        )
        return info, pe.wall if pe else rec.timestamp, "audit+procfs" if pe else "audit"

    def _created(self, pe: _PendingExec | None, rec: ExecRecord | None) -> Row:
        info, when, source = self._merge(pe, rec)
        if pe is None or rec is None:
            self._remember_alone(pe is not None, info.pid, when)
        return self._created_row(info, when, source)

    def _created_row(self, info: ProcessInfo, when: float, source: str) -> Row:
        self.rows_from[source] += 1
        parent = self._describe(info.ppid)
        grandparent = self._describe(parent.ppid) if parent else None
        self._infos[info.pid] = info
        self._reported.add(info.pid)
        row: Row = {
            "table": "DeviceProcessEvents",
            "Timestamp": iso(when),
            "ActionType": "ProcessCreated",
            "FileName": info.file_name,
            "FolderPath": info.folder_path,
            "SHA256": info.sha256 or None,
            "ProcessId": info.pid,
            "ProcessCommandLine": info.command_line,
            "ProcessCreationTime": _start_iso(info.start_time or when),
            "AccountName": info.account,
            "ProcessPosixUserId": info.uid if info.uid >= 0 else None,
            "ProcessCurrentWorkingDirectory": info.cwd or None,
            "AdditionalFields": {"Source": source},
        }
        row.update(_initiating(info.ppid, parent, grandparent))
        return row

    def _terminated(self, ev: ExitEvent) -> list[Row]:
        pid = ev.tgid
        if not self.exit_events or pid not in self._reported:
            return []
        info = self._infos.get(pid)
        if info is None:
            return []
        parent = self._infos.get(info.ppid)
        grandparent = self._infos.get(parent.ppid) if parent else None
        row: Row = {
            "table": "DeviceProcessEvents",
            "Timestamp": iso(self._wall(ev.timestamp_ns)),
            "ActionType": "ProcessTerminated",
            "FileName": info.file_name,
            "FolderPath": info.folder_path,
            "SHA256": info.sha256 or None,
            "ProcessId": pid,
            "ProcessCommandLine": info.command_line,
            "ProcessCreationTime": _start_iso(info.start_time) if info.start_time else None,
            "AccountName": info.account,
            "ProcessPosixUserId": info.uid if info.uid >= 0 else None,
            "AdditionalFields": {"ExitCode": (ev.exit_code >> 8) & 0xFF, "Signal": ev.exit_code & 0x7F},
        }
        row.update(_initiating(info.ppid, parent, grandparent))
        return [row]


def _initiating(ppid: int, parent: ProcessInfo | None, grandparent: ProcessInfo | None) -> Row:
    if parent is None:
        return {"InitiatingProcessId": ppid} if ppid > 0 else {}
    return {
        "InitiatingProcessId": ppid,
        "InitiatingProcessFileName": parent.file_name or None,
        "InitiatingProcessFolderPath": parent.folder_path or None,
        "InitiatingProcessCommandLine": parent.command_line or None,
        "InitiatingProcessSHA256": parent.sha256 or None,
        "InitiatingProcessCreationTime": _start_iso(parent.start_time) if parent.start_time else None,
        "InitiatingProcessAccountName": parent.account or None,
        "InitiatingProcessPosixUserId": parent.uid if parent.uid >= 0 else None,
        "InitiatingProcessParentId": parent.ppid if parent.ppid > 0 else None,
        "InitiatingProcessParentFileName": grandparent.file_name or None if grandparent else None,
    }
