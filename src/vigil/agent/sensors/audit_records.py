"""Parse kernel audit records and assemble SYSCALL/EXECVE/CWD/PATH records into one exec event."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

AUDIT_SYSCALL = 1300
AUDIT_PATH = 1302
AUDIT_CWD = 1307
AUDIT_EXECVE = 1309
AUDIT_EOE = 1320
AUDIT_PROCTITLE = 1327

EXEC_SYSCALLS = {"x86_64": frozenset({59, 322}), "aarch64": frozenset({221, 281})}
_ARCH_NAMES = {"c000003e": "x86_64", "c00000b7": "aarch64"}

_HEADER = re.compile(r"audit\((\d+)\.(\d+):(\d+)\):\s?")
# Values are "quoted", 'quoted' (user records), (null), or a bare token (numbers or hex-encoded text).
_FIELD = re.compile(r"([A-Za-z_][\w\-]*(?:\[\d+\])?)=(\"[^\"]*\"|'[^']*'|\S*)")
_HEX = re.compile(r"^(?:[0-9A-F]{2})+$")


class AuditParseError(ValueError):
    """A record does not have the audit text shape; carries the offending text."""

    def __init__(self, problem: str, text: str) -> None:
        super().__init__(f"{problem}: {text[:120]!r}")
        self.text = text


@dataclass(frozen=True)
class AuditRecord:
    type: int
    seconds: int
    millis: int
    serial: int
    fields: dict[str, str]

    @property
    def timestamp(self) -> float:
        return self.seconds + self.millis / 1000


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


def parse_record(record_type: int, payload: bytes | str) -> AuditRecord:
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    text = text.rstrip("\0\n")
    m = _HEADER.match(text)
    if m is None:
        raise AuditParseError("no audit(...) header", text)
    fields = {k: v for k, v in _FIELD.findall(text, m.end())}
    return AuditRecord(record_type, int(m.group(1)), int(m.group(2)), int(m.group(3)), fields)


def decode_value(raw: str) -> str | None:
    """Decode an untrusted-string value: "quoted" as is, (null) as None, otherwise hex-encoded bytes."""
    if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
        return raw[1:-1]
    if raw == "(null)":
        return None
    if _HEX.match(raw):
        return bytes.fromhex(raw).decode("utf-8", "surrogateescape")
    return raw


def _decode_argv(records: list[AuditRecord]) -> tuple[str, ...] | None:
    """Rebuild argv from one or more EXECVE records, including args split as ``aN[i]`` chunks."""
    if not records:
        return None
    merged: dict[str, str] = {}
    for r in records:
        merged.update(r.fields)
    try:
        argc = int(merged.get("argc", "0"))
    except ValueError:
        return None
    argv: list[str] = []
    for i in range(argc):
        whole = merged.get(f"a{i}")
        if whole is not None:
            argv.append(decode_value(whole) or "")
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


def build_exec(records: list[AuditRecord]) -> ExecRecord | None:
    """Turn one event's records into an ExecRecord, or None when it is not a successful exec."""
    syscall = next((r for r in records if r.type == AUDIT_SYSCALL), None)
    if syscall is None:
        return None
    f = syscall.fields
    arch = _ARCH_NAMES.get(f.get("arch", ""), "")
    if _int(f, "syscall") not in EXEC_SYSCALLS.get(arch, frozenset()) or f.get("success") != "yes":
        return None
    argv = _decode_argv([r for r in records if r.type == AUDIT_EXECVE])
    if argv is None:
        title = next((r for r in records if r.type == AUDIT_PROCTITLE), None)
        raw = decode_value(title.fields.get("proctitle", "")) if title else None
        argv = tuple(raw.split("\0")) if raw else ()
    cwd_rec = next((r for r in records if r.type == AUDIT_CWD), None)
    auid = _int(f, "auid")
    return ExecRecord(
        serial=syscall.serial,
        timestamp=syscall.timestamp,
        pid=_int(f, "pid"),
        ppid=_int(f, "ppid"),
        uid=_int(f, "uid"),
        auid=None if auid in (-1, 4294967295) else auid,
        exe=decode_value(f.get("exe", "")) or "",
        comm=decode_value(f.get("comm", "")) or "",
        argv=argv,
        cwd=(decode_value(cwd_rec.fields.get("cwd", "")) or "") if cwd_rec else "",
        key=decode_value(f.get("key", "(null)")),
    )


@dataclass
class _Partial:
    first_seen: float
    records: list[AuditRecord] = field(default_factory=list)


class ExecAssembler:
    """Groups records by event serial; an event is complete at its EOE record or after ``max_age``."""

    def __init__(self, max_age: float = 2.0) -> None:
        self.max_age = max_age
        self._open: dict[int, _Partial] = {}
        self.malformed = 0

    def feed(self, record_type: int, payload: bytes, now: float) -> Iterator[ExecRecord]:
        if record_type < 1300 or record_type >= 1400:
            return  # kernel-side user/config messages are not part of syscall events
        try:
            rec = parse_record(record_type, payload)
        except AuditParseError:
            self.malformed += 1
            return
        if rec.type == AUDIT_EOE:
            part = self._open.pop(rec.serial, None)
            if part is not None and (ex := build_exec(part.records)) is not None:
                yield ex
            return
        self._open.setdefault(rec.serial, _Partial(now)).records.append(rec)

    def expire(self, now: float) -> Iterator[ExecRecord]:
        """Complete events whose EOE never came (it can be lost when the backlog overflows)."""
        stale = [s for s, p in self._open.items() if now - p.first_seen > self.max_age]
        for serial in stale:
            ex = build_exec(self._open.pop(serial).records)
            if ex is not None:
                yield ex

    def __len__(self) -> int:
        return len(self._open)
