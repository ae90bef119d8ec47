"""Decoding process.bpf.c's ring-buffer records, built here byte by byte, and turning them into rows."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from vigil.agent.sensors.bpf_events import (
    ARGV_TRUNCATED,
    HEADER,
    BadRecord,
    Kind,
    command_line,
    decode,
    path_from_leaf_first,
)
from vigil.agent.sensors.process_ebpf import KernelRows
from vigil.agent.sensors.procfs import HashCache, ProcessInfo


def record(kind: int, pid: int, *, ppid: int = 100, ts: int = 5_000_000_000, start: int = 4_000_000_000,
           uid: int = 1000, exit_code: int = 0, flags: int = 0, comm: bytes = b"true",
           exe: bytes = b"", argv: bytes = b"", cwd: bytes = b"") -> bytes:
    """A record as the kernel side writes it: header, then exe, argv and cwd bytes back to back."""
    head = HEADER.pack(ts, start, kind, pid, pid, ppid, uid, uid, uid, exit_code, flags,
                       len(exe), len(argv), len(cwd), 0, comm)
    return head + exe + argv + cwd


def test_the_header_is_the_kernel_structs_80_bytes() -> None:
    assert HEADER.size == 80  # sizeof(struct vigil_event) in process.bpf.c


def test_exec_record_decodes_path_argv_and_cwd() -> None:
    rec = record(Kind.EXEC, 4242, exe=b"true\0bin\0usr\0", argv=b"/bin/true\0--flag=a b\0x\0",
                 cwd=b"work\0home\0")
    ev = decode(rec)
    assert ev.kind is Kind.EXEC
    assert (ev.pid, ev.ppid, ev.uid, ev.comm) == (4242, 100, 1000, "true")
    assert (ev.timestamp_ns, ev.start_ns) == (5_000_000_000, 4_000_000_000)
    assert ev.exe == "/usr/bin/true"
    assert ev.command_line == "/bin/true '--flag=a b' x"
    assert ev.cwd == "/home/work"
    assert not ev.argv_truncated


def test_truncated_argv_keeps_the_partial_last_argument_and_says_so() -> None:
    ev = decode(record(Kind.EXEC, 7, exe=b"x\0", argv=b"x\0abc\0de", flags=ARGV_TRUNCATED))
    assert ev.command_line == "x abc de"
    assert ev.argv_truncated


def test_empty_arguments_and_non_utf8_bytes_survive() -> None:
    assert command_line(b"printf\0\0end\0") == "printf '' end"
    assert path_from_leaf_first(b"caf\xe9\0tmp\0") == "/tmp/caf\udce9"
    assert path_from_leaf_first(b"") == ""


def test_fork_and_exit_records_are_bare_headers() -> None:
    fork = decode(record(Kind.FORK, 300, ppid=200, comm=b"sh"))
    assert (fork.kind, fork.pid, fork.ppid, fork.comm, fork.exe) == (Kind.FORK, 300, 200, "sh", "")
    ex = decode(record(Kind.EXIT, 300, exit_code=7 << 8))
    assert ex.kind is Kind.EXIT and ex.exit_code == 0x700


@pytest.mark.parametrize(("data", "message"), [
    (b"\0" * 79, "shorter than the 80-byte header"),
    (record(9, 1), "unknown record kind 9"),
    (record(Kind.EXEC, 1, exe=b"a\0")[:-1], "need 82 bytes, record has 81"),
    (record(Kind.FORK, 1) + b"extra", "need 80 bytes, record has 85"),
])
def test_malformed_records_say_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(BadRecord, match=message):
        decode(data)


def _kernel_rows() -> KernelRows:
    parent = ProcessInfo(pid=100, ppid=1, exe="/usr/bin/python3", command_line="python3 t.py", uid=0,
                         account="root", start_time=1000.0, sha256="aa")
    known = {100: parent, 1: ProcessInfo(pid=1, ppid=0, exe="/sbin/init", command_line="/sbin/init")}
    return KernelRows(exit_events=True, hashes=HashCache(), read=lambda pid: known.get(pid, ProcessInfo(pid=pid)))


def test_fork_exec_exit_become_created_and_terminated_rows(tmp_path: Path) -> None:
    exe = tmp_path / "tool"
    exe.write_bytes(b"\x7fELF pretend")
    leaf_first = b"\0".join(reversed(str(exe).encode().strip(b"/").split(b"/"))) + b"\0"
    k = _kernel_rows()
    records = [
        record(Kind.FORK, 200, ppid=100, comm=b"python3"),
        record(Kind.EXEC, 200, ppid=100, exe=leaf_first, argv=b"tool\0--x y\0", cwd=b"tmp\0"),
        record(Kind.EXIT, 200, ppid=100, exit_code=3 << 8),
    ]
    rows, bad = k.feed(records, now=1.0)
    assert bad == []
    assert [r["ActionType"] for r in rows] == ["ProcessCreated", "ProcessTerminated"]
    created, ended = rows
    assert created["ProcessCommandLine"] == "tool '--x y'"
    assert created["FolderPath"] == str(exe) and created["FileName"] == "tool"
    assert created["SHA256"] == hashlib.sha256(b"\x7fELF pretend").hexdigest()
    assert created["ProcessCurrentWorkingDirectory"] == "/tmp"
    assert created["ProcessPosixUserId"] == 1000
    assert created["InitiatingProcessId"] == 100 and created["InitiatingProcessCommandLine"] == "python3 t.py"
    assert created["InitiatingProcessParentFileName"] == "init"
    assert created["AdditionalFields"] == {"Source": "ebpf"}
    assert ended["ProcessId"] == 200 and ended["AdditionalFields"] == {"ExitCode": 3, "Signal": 0}
    assert ended["ProcessCommandLine"] == "tool '--x y'"
    assert k.tracker.info(200) is not None and k.tracker.info(200).command_line == "tool '--x y'"  # type: ignore[union-attr]


def test_a_fork_that_never_execs_is_known_to_its_children_but_not_reported() -> None:
    k = _kernel_rows()
    rows, _ = k.feed([
        record(Kind.EXEC, 150, ppid=100, exe=b"true\0", argv=b"true\0"),  # 100 is described for this row
        record(Kind.FORK, 300, ppid=100),
        record(Kind.EXEC, 301, ppid=300, exe=b"true\0", argv=b"true\0"),
        record(Kind.EXIT, 300, ppid=100),
    ], now=1.0)
    assert [(r["ActionType"], r["ProcessId"]) for r in rows] == [("ProcessCreated", 150), ("ProcessCreated", 301)]
    assert rows[1]["InitiatingProcessId"] == 300
    assert rows[1]["InitiatingProcessCommandLine"] == "python3 t.py"  # the fork runs its parent's image
    assert rows[1]["InitiatingProcessParentId"] == 100


def test_a_bad_record_is_returned_and_the_rest_of_the_batch_still_counts() -> None:
    k = _kernel_rows()
    rows, bad = k.feed([record(Kind.EXEC, 1, exe=b"a\0")[:-1], record(Kind.EXEC, 400, exe=b"true\0",
                                                                      argv=b"true\0", flags=ARGV_TRUNCATED)],
                     now=1.0)
    assert len(bad) == 1 and "record has 81" in str(bad[0])
    assert [r["ProcessId"] for r in rows] == [400]
    assert rows[0]["AdditionalFields"] == {"Source": "ebpf", "CommandLineTruncated": True}
