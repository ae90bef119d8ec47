"""Turns an audited execve (SYSCALL + EXECVE/CWD/PROCTITLE records) into one ExecRecord."""

from __future__ import annotations

from dataclasses import dataclass

from vigil.agent.sensors.audit_events import (
    AUDIT_EOE,
    AUDIT_SYSCALL,
    AuditInterest,
    RecordAssembler,
    SyscallEvent,
    syscall_keys,
)
from vigil.agent.sensors.audit_parse import (
    AuditParseError,
    AuditRecord,
    decode_arg,
    decode_value,
    parse_fields,
    parse_header,
    parse_record,
)

__all__ = [
    "AUDIT_CWD", "AUDIT_EOE", "AUDIT_EXECVE", "AUDIT_PATH", "AUDIT_PROCTITLE", "AUDIT_SYSCALL", "EXEC_INTEREST",
    "AuditParseError", "AuditRecord", "ExecAssembler", "ExecRecord", "build_exec", "decode_value", "parse_record",
]

AUDIT_PATH = 1302
AUDIT_CWD = 1307
AUDIT_EXECVE = 1309
AUDIT_PROCTITLE = 1327

_X86_64, _AARCH64 = "c000003e", "c00000b7"
EXEC_SYSCALLS = {"x86_64": frozenset({59, 322}), "aarch64": frozenset({221, 281})}
# PATH records are not kept: exe (SYSCALL) and cwd (CWD) already say what they would.
EXEC_INTEREST = AuditInterest(
    syscalls=syscall_keys([(_X86_64, EXEC_SYSCALLS["x86_64"]), (_AARCH64, EXEC_SYSCALLS["aarch64"])]),
    record_types=frozenset({AUDIT_EXECVE, AUDIT_CWD, AUDIT_PROCTITLE}),
)


@dataclass(frozen=True)
class ExecRecord:
    """One successful execve as audit saw it, assembled from its records."""

    serial: int
    timestamp: float
    pid: int
    ppid: int
    uid: int
    auid: int | None
    exe: str
    comm: str
    argv: tuple[str, ...]
    cwd: str
    key: str | None


def _fields(payload: bytes) -> dict[str, str]:
    return parse_fields(payload, parse_header(payload)[3])


def _decode_argv(payloads: list[bytes]) -> tuple[str, ...] | None:
    """Rebuild argv from one or more EXECVE records, including args split as ``aN[i]`` chunks."""
    if not payloads:
        return None
    merged: dict[str, str] = {}
    for p in payloads:
        merged.update(_fields(p))
    try:
        argc = int(merged.get("argc", "0"))
    except ValueError:
        return None
    argv: list[str] = []
    for i in range(argc):
        whole = merged.get(f"a{i}")
        if whole is not None:
            argv.append(decode_arg(whole))
            continue
        parts: list[str] = []
        j = 0
        while (chunk := merged.get(f"a{i}[{j}]")) is not None:
            parts.append(chunk)
            j += 1
        if not parts:
            break  # the kernel cut the record short; keep what is complete
        if all(p.startswith('"') for p in parts):
            argv.append("".join(p[1:-1] for p in parts))
        else:
            argv.append(bytes.fromhex("".join(parts)).decode("utf-8", "surrogateescape"))
    return tuple(argv)


def _int(fields: dict[str, str], name: str, default: int = -1) -> int:
    try:
        return int(fields[name])
    except (KeyError, ValueError):
        return default


def build_exec(event: SyscallEvent) -> ExecRecord | None:
    """The ExecRecord of one event, or None when it is not a successful exec."""
    f = event.syscall
    arch = {_X86_64: "x86_64", _AARCH64: "aarch64"}.get(f.get("arch", ""), "")
    if _int(f, "syscall") not in EXEC_SYSCALLS.get(arch, frozenset()) or f.get("success") != "yes":
        return None
    argv = _decode_argv(event.payloads(AUDIT_EXECVE))
    if argv is None:  # only then is the proctitle worth decoding
        titles = event.payloads(AUDIT_PROCTITLE)
        raw = decode_value(_fields(titles[0]).get("proctitle", "")) if titles else None
        argv = tuple(raw.split("\0")) if raw else ()
    cwds = event.payloads(AUDIT_CWD)
    auid = _int(f, "auid")
    return ExecRecord(
        serial=event.serial,
        timestamp=event.timestamp,
        pid=_int(f, "pid"),
        ppid=_int(f, "ppid"),
        uid=_int(f, "uid"),
        auid=None if auid in (-1, 4294967295) else auid,
        exe=decode_value(f.get("exe", "")) or "",
        comm=decode_value(f.get("comm", "")) or "",
        argv=argv,
        cwd=(decode_value(_fields(cwds[0]).get("cwd", "")) or "") if cwds else "",
        key=decode_value(f.get("key", "(null)")),
    )


class ExecAssembler(RecordAssembler[ExecRecord]):
    """Records in, ExecRecords out: the exec part of the shared audit feed, usable on its own."""

    def __init__(self, max_age: float = 2.0) -> None:
        super().__init__(EXEC_INTEREST, build_exec, max_age)
