"""Joining proc-connector events with audit records: one row per exec, parents described."""

from __future__ import annotations

import pytest

from vigil.agent.sensors.audit_records import (
    AUDIT_CWD,
    AUDIT_EOE,
    AUDIT_EXECVE,
    AUDIT_SYSCALL,
    ExecAssembler,
    ExecRecord,
)
from vigil.agent.sensors.base import Row
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
    # Audit stamps the execve at entry (coarse clock), so no later than the exec event.
    return ExecRecord(serial=1, timestamp=2000.0, pid=pid, ppid=ppid, uid=0, auid=None, exe="/usr/bin/true",
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


# -- audit arriving late: each exec is reported exactly once ----------------------------------

def exec_records(serial: int, millis: int, pid: int, argv: tuple[str, ...]) -> list[tuple[int, bytes]]:
    """The records the kernel sends for one execve, as text, stamped 2000.<millis>."""
    head = f"audit(2000.{millis:03d}:{serial}): "
    args = " ".join(f'a{i}="{a}"' for i, a in enumerate(argv))
    return [
        (AUDIT_SYSCALL, (head + f"arch=c000003e syscall=59 success=yes exit=0 a0=1 items=2 ppid=100 pid={pid}"
                         ' auid=4294967295 uid=0 comm="true" exe="/usr/bin/true" key="vigil_exec.1"').encode()),
        (AUDIT_EXECVE, (head + f"argc={len(argv)} {args}").encode()),
        (AUDIT_CWD, (head + 'cwd="/tmp"').encode()),
        (AUDIT_EOE, head.encode()),
    ]


def replay(t: ProcessTracker, inputs: list[tuple[float, ExecEvent | list[tuple[int, bytes]]]]) -> list[Row]:
    """Feed proc-connector events and recorded audit records at the given (monotonic) times, the
    way the sensor does: its timers run before and after each input, then everything flushes."""
    assembler = ExecAssembler()
    rows: list[Row] = []
    for now, item in sorted(inputs, key=lambda i: i[0]):
        rows += t.expire(now)
        if isinstance(item, ExecEvent):
            rows += t.on_exec(item, now)
        else:
            for record_type, payload in item:
                for rec in assembler.feed(record_type, payload, now):
                    rows += t.on_audit(rec, now)
    return rows + t.expire(float("inf"))


def created(rows: list[Row]) -> list[tuple[int, str, str]]:
    """(pid, command line, or the image for rows from /proc, whose fake read has no command line, source)."""
    return [(r["ProcessId"], r["ProcessCommandLine"] or r["FolderPath"], r["AdditionalFields"]["Source"])
            for r in rows if r["ActionType"] == "ProcessCreated"]


@pytest.mark.parametrize("delay", [0.0, 0.3, 0.499, 0.501, 0.7, 5.0])
def test_an_exec_is_reported_once_however_late_its_audit_record_comes(delay: float) -> None:
    t = tracker(gone=False)
    # exec at 2000.010 (proc connector, monotonic 0.0); audit stamps its entry at 2000.009.
    rows = replay(t, [(0.0, ExecEvent(10_000_000, 300, 300)),
                      (0.004 + delay, exec_records(7, 9, 300, ("/bin/true", "late")))])
    (row,) = created(rows)
    if delay + 0.004 <= t.audit_wait:
        assert row == (300, "/bin/true late", "audit+procfs")
    else:  # reported from /proc after the wait; the record that comes after it is not a second row
        assert row == (300, "/usr/bin/x", "procfs")
        assert t.late["audit"] == 1
    assert t.pending() == 0


def test_a_late_record_is_not_paired_with_the_next_exec_of_the_same_pid() -> None:
    # sh -c 'exec a' style: pid 300 execs twice; the first record comes 0.7 s late, the second on time.
    t = tracker(gone=False)
    rows = replay(t, [
        (0.0, ExecEvent(10_000_000, 300, 300)),
        (0.6, ExecEvent(610_000_000, 300, 300)),
        (0.7, exec_records(7, 9, 300, ("/bin/sh", "-c", "exec true"))),
        (0.705, exec_records(8, 609, 300, ("true",))),
    ])
    assert created(rows) == [(300, "/usr/bin/x", "procfs"), (300, "true", "audit+procfs")]
    assert t.late["audit"] == 1


def test_a_lost_record_releases_its_exec_when_the_next_record_of_that_pid_comes() -> None:
    # Records of one process come in order: the second exec's record means the first's is lost.
    t = tracker(gone=False)
    rows = replay(t, [
        (0.0, ExecEvent(10_000_000, 300, 300)),
        (0.1, ExecEvent(110_000_000, 300, 300)),
        (0.104, exec_records(8, 109, 300, ("second",))),
    ])
    assert created(rows) == [(300, "/usr/bin/x", "procfs"), (300, "second", "audit+procfs")]


def test_a_late_proc_connector_event_after_the_audit_row_is_not_a_second_row() -> None:
    t = tracker(gone=False)
    rows = replay(t, [
        (0.0, exec_records(7, 9, 300, ("/bin/true", "x"))),
        (0.8, ExecEvent(10_000_000, 300, 300)),  # its exec happened at 2000.010, reported 0.8 s late
    ])
    assert created(rows) == [(300, "/bin/true x", "audit")]
    assert t.late["exec"] == 1


def test_with_audit_proc_is_read_only_when_the_record_is_slow() -> None:
    reads: list[int] = []

    def read(pid: int) -> ProcessInfo:
        reads.append(pid)
        return ProcessInfo(pid=pid, exe="/usr/bin/x")

    t = ProcessTracker(use_proc=True, use_audit=True, audit_wait=0.5, exit_events=True, read=read,
                       wall_from_ns=lambda ns: 2000.0 + ns / 1e9)
    replay(t, [(0.0, ExecEvent(10_000_000, 300, 300)), (0.004, exec_records(7, 9, 300, ("a",))),
               (1.0, ExecEvent(1_010_000_000, 301, 301)), (1.2, exec_records(9, 1009, 301, ("b",)))])
    assert reads.count(300) == 0 and reads.count(301) == 1  # the second record took longer than the grace
