"""Joins proc-connector fork/exec/exit events with audit exec records into DeviceProcessEvents rows."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from vigil.agent.clock import iso
from vigil.agent.sensors.audit_records import ExecRecord
from vigil.agent.sensors.base import Row
from vigil.agent.sensors.proc_connector import ExecEvent, ExitEvent, ForkEvent
from vigil.agent.sensors.procfs import HashCache, ProcessInfo, UserNames, boot_time, join_argv, read_process

# How long a dead process stays known, so late rows of its children can still describe it.
_DEAD_RETENTION_SECONDS = 30.0


@dataclass(frozen=True)
class _PendingExec:
    deadline: float
    wall: float  # when the exec happened, epoch seconds
    snapshot: ProcessInfo


@dataclass(frozen=True)
class _PendingAudit:
    deadline: float
    record: ExecRecord


def _wall_from_monotonic_ns() -> Callable[[int], float]:
    offset = time.time() - time.monotonic()
    return lambda ns: offset + ns / 1e9


class ProcessTracker:
    """Pure bookkeeping, no sockets: feed it events with the current monotonic time, get rows back.

    With both sources on, an exec seen by the proc connector waits up to ``audit_wait`` for the
    matching audit record (same pid, in order), because /proc reads lose the race against
    short-lived processes while audit carries argv, exe and cwd even after the process is gone.
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
    ) -> None:
        self.use_proc = use_proc
        self.use_audit = use_audit
        self.audit_wait = audit_wait
        self.exit_events = exit_events
        self.users = users or UserNames()
        self.hashes = hashes or HashCache()
        boot = boot_time()
        self._read = read or (lambda pid: read_process(pid, self.users, self.hashes, boot))
        self._wall = wall_from_ns or _wall_from_monotonic_ns()
        self._infos: dict[int, ProcessInfo] = {}
        self._reported: set[int] = set()  # pids with a ProcessCreated row, so exits are worth reporting
        self._dying: dict[int, float] = {}
        self._pending_exec: dict[int, deque[_PendingExec]] = {}
        self._pending_audit: dict[int, deque[_PendingAudit]] = {}
        self._pending_exit: dict[int, ExitEvent] = {}
        self.rows_from = {"audit+procfs": 0, "procfs": 0, "audit": 0}

    # -- inputs -------------------------------------------------------------------------------

    def on_fork(self, ev: ForkEvent) -> None:
        if ev.child_pid != ev.child_tgid:
            return  # a new thread, not a process
        child = ev.child_tgid
        self._dying.pop(child, None)
        self._reported.discard(child)
        parent = self._infos.get(ev.parent_tgid)
        if parent is not None:
            self._infos[child] = parent.forked(child, self._wall(ev.timestamp_ns))
        else:
            self._infos[child] = ProcessInfo(pid=child, ppid=ev.parent_tgid, start_time=self._wall(ev.timestamp_ns))

    def on_exec(self, ev: ExecEvent, now: float) -> list[Row]:
        pid = ev.tgid
        pe = _PendingExec(now + self.audit_wait, self._wall(ev.timestamp_ns), self._read(pid))
        if not self.use_audit:
            return [self._created(pe, None)]
        waiting = self._pending_audit.get(pid)
        if waiting:
            pa = waiting.popleft()
            if not waiting:
                del self._pending_audit[pid]
            return self._with_exit(pid, [self._created(pe, pa.record)])
        self._pending_exec.setdefault(pid, deque()).append(pe)
        return []

    def on_audit(self, rec: ExecRecord, now: float) -> list[Row]:
        if not self.use_proc:
            return [self._created(None, rec)]
        waiting = self._pending_exec.get(rec.pid)
        if waiting:
            pe = waiting.popleft()
            if not waiting:
                del self._pending_exec[rec.pid]
            return self._with_exit(rec.pid, [self._created(pe, rec)])
        self._pending_audit.setdefault(rec.pid, deque()).append(_PendingAudit(now + self.audit_wait, rec))
        return []

    def on_exit(self, ev: ExitEvent, now: float) -> list[Row]:
        if ev.pid != ev.tgid:
            return []  # a thread ended, the process lives on
        pid = ev.tgid
        self._dying[pid] = now + _DEAD_RETENTION_SECONDS
        if pid in self._pending_exec:
            self._pending_exit[pid] = ev  # report the exit after the exec it follows
            return []
        return self._terminated(ev)

    def expire(self, now: float) -> list[Row]:
        """Emit execs whose partner never came, and forget processes dead for a while."""
        rows: list[Row] = []
        for pid in [p for p, q in self._pending_exec.items() if q[0].deadline <= now]:
            queue = self._pending_exec[pid]
            while queue and queue[0].deadline <= now:
                rows.append(self._created(queue.popleft(), None))
            if not queue:
                del self._pending_exec[pid]
                rows += self._with_exit(pid, [])
        for pid in [p for p, q in self._pending_audit.items() if q[0].deadline <= now]:
            aqueue = self._pending_audit[pid]
            while aqueue and aqueue[0].deadline <= now:
                rows.append(self._created(None, aqueue.popleft().record))
            if not aqueue:
                del self._pending_audit[pid]
        for pid in [p for p, t in self._dying.items() if t <= now]:
            del self._dying[pid]
            self._infos.pop(pid, None)
            self._reported.discard(pid)
        return rows

    def next_deadline(self) -> float | None:
        heads = [q[0].deadline for q in self._pending_exec.values()]
        heads += [q[0].deadline for q in self._pending_audit.values()]
        return min(heads) if heads else None

    def pending(self) -> int:
        return sum(map(len, self._pending_exec.values())) + sum(map(len, self._pending_audit.values()))

    def known(self) -> int:
        return len(self._infos)

    def info(self, pid: int) -> ProcessInfo | None:
        """What the tracker knows of ``pid``; read from other sensors' threads, so no mutation here.

        While an exec waits for its audit record, the known image is the parent's (from the fork),
        so the fresh /proc snapshot taken at the exec is returned instead, if it has one.
        """
        try:
            waiting = self._pending_exec.get(pid)
            if waiting:
                snap = waiting[-1].snapshot
                return snap if snap.exe else None
        except IndexError:  # emptied by the sensor thread meanwhile
            pass
        return self._infos.get(pid)

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
        snap = pe.snapshot if pe else None
        pid = rec.pid if rec else snap.pid if snap else -1
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
            "ProcessCreationTime": iso(info.start_time or when),
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
            "ProcessCreationTime": iso(info.start_time) if info.start_time else None,
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
        "InitiatingProcessCreationTime": iso(parent.start_time) if parent.start_time else None,
        "InitiatingProcessAccountName": parent.account or None,
        "InitiatingProcessPosixUserId": parent.uid if parent.uid >= 0 else None,
        "InitiatingProcessParentId": parent.ppid if parent.ppid > 0 else None,
        "InitiatingProcessParentFileName": grandparent.file_name or None if grandparent else None,
    }
