"""The audit record parser and assembler, on records written as the kernel formats them."""

from __future__ import annotations

from vigil.agent.sensors.audit_netlink import build_exec_rule, parse_rule
from vigil.agent.sensors.audit_records import (
    AUDIT_CWD,
    AUDIT_EOE,
    AUDIT_EXECVE,
    AUDIT_PATH,
    AUDIT_PROCTITLE,
    AUDIT_SYSCALL,
    ExecAssembler,
    decode_value,
    parse_record,
)

SYSCALL = (
    "audit(1795857922.554:13): arch=c000003e syscall=59 success=yes exit=0 a0=565119bea8a0 a1=565119bea8f8"
    " a2=565146f8ead8 a3=8 items=2 ppid=6949 pid=6950 auid=4294967295 uid=1000 gid=0 euid=0 suid=0 fsuid=0"
    ' egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm="echo" exe="/usr/bin/echo" key="vigil_exec.6942"'
)


def feed_all(asm: ExecAssembler, records: list[tuple[int, str]]) -> list:
    out = []
    for t, text in records:
        out += list(asm.feed(t, text.encode() + b"\0", now=0.0))
    return out


def test_decode_value_forms() -> None:
    assert decode_value('"/usr/bin/true"') == "/usr/bin/true"
    assert decode_value("2F62696E2F6563686F2027612062272078") == "/bin/echo 'a b' x"
    assert decode_value("(null)") is None
    assert decode_value("612062") == "a b"


def test_parse_record_header_and_fields() -> None:
    rec = parse_record(AUDIT_SYSCALL, SYSCALL)
    assert (rec.seconds, rec.millis, rec.serial) == (1795857922, 554, 13)
    assert rec.fields["pid"] == "6950" and rec.fields["exe"] == '"/usr/bin/echo"'
    assert rec.timestamp == 1795857922.554


def test_assembles_one_exec_with_hex_argv() -> None:
    asm = ExecAssembler()
    events = feed_all(asm, [
        (AUDIT_SYSCALL, SYSCALL),
        (1321, "audit(1795857922.554:13): fver=0 fp=0 fi=0 fe=0 old_pp=000001fffeffffff"),
        (AUDIT_EXECVE, 'audit(1795857922.554:13): argc=3 a0="/bin/echo" a1=612062 a2="x"'),
        (AUDIT_CWD, 'audit(1795857922.554:13): cwd="/work/main"'),
        (AUDIT_PATH, 'audit(1795857922.554:13): item=0 name="/bin/echo" inode=260249 dev=fe:00 mode=0100755'),
        (AUDIT_PROCTITLE, "audit(1795857922.554:13): proctitle=2F62696E2F6563686F006120620078"),
    ])
    assert events == []  # not complete until EOE
    (ex,) = feed_all(asm, [(AUDIT_EOE, "audit(1795857922.554:13): ")])
    assert ex.argv == ("/bin/echo", "a b", "x")
    assert (ex.pid, ex.ppid, ex.uid, ex.auid) == (6950, 6949, 1000, None)
    assert (ex.exe, ex.comm, ex.cwd, ex.key) == ("/usr/bin/echo", "echo", "/work/main", "vigil_exec.6942")
    assert len(asm) == 0


def test_long_argument_split_over_several_execve_records() -> None:
    # The kernel splits an argument too long for one record into aN[i] chunks, announced by aN_len.
    chunk1, chunk2 = "41" * 10, "42" * 5
    asm = ExecAssembler()
    (ex,) = feed_all(asm, [
        (AUDIT_SYSCALL, SYSCALL.replace(":13)", ":20)")),
        (AUDIT_EXECVE, 'audit(1795857922.554:20): argc=3 a0="python3" a1_len=15 a1[0]=' + chunk1),
        (AUDIT_EXECVE, 'audit(1795857922.554:20): a1[1]=' + chunk2 + ' a2="--last"'),
        (AUDIT_EOE, "audit(1795857922.554:20): "),
    ])
    assert ex.argv == ("python3", "A" * 10 + "B" * 5, "--last")


def test_interleaved_events_are_kept_apart() -> None:
    asm = ExecAssembler()
    a = SYSCALL.replace(":13)", ":30)")
    b = SYSCALL.replace(":13)", ":31)").replace("pid=6950", "pid=7000")
    out = feed_all(asm, [
        (AUDIT_SYSCALL, a),
        (AUDIT_SYSCALL, b),
        (AUDIT_EXECVE, 'audit(1795857922.554:31): argc=1 a0="b"'),
        (AUDIT_EXECVE, 'audit(1795857922.554:30): argc=1 a0="a"'),
        (AUDIT_EOE, "audit(1795857922.554:31): "),
        (AUDIT_EOE, "audit(1795857922.554:30): "),
    ])
    assert [(e.pid, e.argv) for e in out] == [(7000, ("b",)), (6950, ("a",))]


def test_failed_exec_and_other_syscalls_are_ignored() -> None:
    asm = ExecAssembler()
    failed = SYSCALL.replace("success=yes exit=0", "success=no exit=-2")
    openat = SYSCALL.replace("syscall=59", "syscall=257").replace(":13)", ":14)")
    out = feed_all(asm, [
        (AUDIT_SYSCALL, failed), (AUDIT_EOE, "audit(1795857922.554:13): "),
        (AUDIT_SYSCALL, openat), (AUDIT_EOE, "audit(1795857922.554:14): "),
    ])
    assert out == []


def test_proctitle_is_the_fallback_when_execve_record_is_missing() -> None:
    asm = ExecAssembler()
    (ex,) = feed_all(asm, [
        (AUDIT_SYSCALL, SYSCALL),
        (AUDIT_PROCTITLE, "audit(1795857922.554:13): proctitle=2F62696E2F6563686F006120620078"),
        (AUDIT_EOE, "audit(1795857922.554:13): "),
    ])
    assert ex.argv == ("/bin/echo", "a b", "x")


def test_events_without_eoe_complete_after_max_age() -> None:
    asm = ExecAssembler(max_age=1.0)
    list(asm.feed(AUDIT_SYSCALL, SYSCALL.encode(), now=10.0))
    list(asm.feed(AUDIT_EXECVE, b'audit(1795857922.554:13): argc=1 a0="x"', now=10.0))
    assert list(asm.expire(10.5)) == []
    (ex,) = asm.expire(11.5)
    assert ex.argv == ("x",)


def test_malformed_records_are_counted_not_raised() -> None:
    asm = ExecAssembler()
    assert list(asm.feed(AUDIT_SYSCALL, b"garbage without header", now=0)) == []
    assert asm.malformed == 1


def test_exec_rule_round_trips_its_key() -> None:
    raw = build_exec_rule("vigil_exec.123", machine="x86_64")
    rule = parse_rule(raw)
    assert rule.key == "vigil_exec.123"
    assert rule.raw == raw
