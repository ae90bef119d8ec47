"""Joining proc-connector events with audit records: one row per exec, parents described."""

from __future__ import annotations

from vigil.agent.sensors.audit_records import ExecRecord
from vigil.agent.sensors.proc_connector import ExecEvent, ExitEvent, ForkEvent
from vigil.agent.sensors.process_tracker import ProcessTracker
from vigil.agent.sensors.procfs import HashCache, ProcessInfo

PARENT = ProcessInfo(pid=100, ppid=1, exe="/usr/bin/python3", command_line="python3 t.py", uid=0,
                     account="root", start_time=1000.0, sha256="aa")
INIT = ProcessInfo(pid=1, ppid=0, exe="/sbin/init", command_line="/sbin/init", uid=0, account="root")


def tracker(use_audit: bool = True, gone: bool = True) -> ProcessTracker:
    known = {100: PARENT, 1: INIT}

    def read(pid: int) -> ProcessInfo:
        # Short-lived children are already gone when /proc is read: the race audit fixes.
        return known.get(pid, ProcessInfo(pid=pid) if gone else ProcessInfo(pid=pid, exe="/usr/bin/x"))

    return ProcessTracker(use_proc=True, use_audit=use_audit, audit_wait=0.5, exit_events=True,
                          hashes=HashCache(), read=read, wall_from_ns=lambda ns: 2000.0 + ns / 1e9)


def audit(pid: int, argv: tuple[str, ...], ppid: int = 100) -> ExecRecord:
    return ExecRecord(serial=1, timestamp=2000.5, pid=pid, ppid=ppid, uid=0, auid=None, exe="/usr/bin/true",
                      comm="true", argv=argv, cwd="/tmp", key="vigil_exec.1")


def test_exec_waits_for_audit_and_the_exit_follows_the_exec_row() -> None:
    t = tracker()
    t.on_fork(ForkEvent(1_000, 100, 100, 200, 200))
    assert t.on_exec(ExecEvent(2_000, 200, 200), now=0.0) == []
    assert t.on_exit(ExitEvent(3_000, 200, 200, 0, 17), now=0.001) == []
    rows = t.on_audit(audit(200, ("/bin/true", "--x y")), now=0.004)
    assert [r["ActionType"] for r in rows] == ["ProcessCreated", "ProcessTerminated"]
    created = rows[0]
    assert created["ProcessCommandLine"] == "/bin/true '--x y'"
    assert created["ProcessId"] == 200 and created["InitiatingProcessId"] == 100
    assert created["InitiatingProcessFileName"] == "python3"
    assert created["InitiatingProcessCommandLine"] == "python3 t.py"
    assert created["InitiatingProcessParentId"] == 1 and created["InitiatingProcessParentFileName"] == "init"
    assert created["ProcessCreationTime"] == "1970-01-01T00:33:20.000001+00:00"  # the fork event's time
    assert created["AdditionalFields"] == {"Source": "audit+procfs"}
    assert t.pending() == 0


def test_exec_without_audit_record_goes_alone_after_the_wait() -> None:
    t = tracker(gone=False)
    assert t.on_exec(ExecEvent(2_000, 300, 300), now=0.0) == []
    assert t.expire(0.4) == []
    (row,) = t.expire(0.6)
    assert row["AdditionalFields"] == {"Source": "procfs"} and row["FolderPath"] == "/usr/bin/x"


def test_audit_only_mode_emits_at_once() -> None:
    t = ProcessTracker(use_proc=False, use_audit=True, audit_wait=0.5, exit_events=True,
                       read=lambda pid: ProcessInfo(pid=pid), wall_from_ns=lambda ns: 0.0)
    (row,) = t.on_audit(audit(400, ("ls",), ppid=1), now=0.0)
    assert row["ProcessCommandLine"] == "ls" and row["AdditionalFields"] == {"Source": "audit"}


def test_thread_events_are_ignored() -> None:
    t = tracker()
    t.on_fork(ForkEvent(1, 100, 100, 501, 100))  # a thread of pid 100
    assert t.on_exit(ExitEvent(2, 501, 100, 0, 0), now=0.0) == []
    assert t.known() == 0
