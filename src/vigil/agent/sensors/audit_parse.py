"""Cheap parsing of kernel audit records: the header, space-separated fields and the value encodings."""

from __future__ import annotations

import re
from dataclasses import dataclass

AUDIT_USER_FIRST = 1100
AUDIT_USER_LAST = 1199

# User-space records (PAM's USER_*) quote free text with spaces in msg='...', so they need this
# regex. Values are "quoted", 'quoted', (null), or a bare token (numbers or hex-encoded text).
FIELD = re.compile(r"([A-Za-z_][\w\-]*(?:\[\d+\])?)=(\"[^\"]*\"|'[^']*'|\S*)")
_HEX = re.compile(r"^(?:[0-9A-F]{2})+$")
_PREFIX = b"audit("


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


def parse_header(payload: bytes) -> tuple[int, int, int, int]:
    """``audit(SECONDS.MILLIS:SERIAL): `` → (seconds, millis, serial, offset of the first field)."""
    close = payload.find(b"):", 6)
    dot = payload.find(b".", 6, close)
    colon = payload.find(b":", dot, close)
    if not payload.startswith(_PREFIX) or close < 0 or dot < 0 or colon < 0:
        raise AuditParseError("no audit(...) header", payload.decode("utf-8", "replace"))
    try:
        seconds, millis, serial = int(payload[6:dot]), int(payload[dot + 1 : colon]), int(payload[colon + 1 : close])
    except ValueError as e:
        raise AuditParseError("bad audit(...) header", payload.decode("utf-8", "replace")) from e
    start = close + 2
    return seconds, millis, serial, start + 1 if payload[start : start + 1] == b" " else start


def serial_of(payload: bytes) -> int | None:
    """Only the serial of ``audit(S.MMM:SERIAL): ``, for records that join an open event."""
    colon = payload.find(b":", 6)
    close = payload.find(b")", colon)
    if not payload.startswith(_PREFIX) or colon < 0 or close < 0:
        return None
    try:
        return int(payload[colon + 1 : close])
    except ValueError:
        return None


def parse_fields(payload: bytes, start: int = 0) -> dict[str, str]:
    """Fields of a kernel record, values raw (quotes kept). The kernel hex-encodes every untrusted
    string holding a space or a quote, so splitting on spaces is exact for syscall-event records."""
    text = payload[start:].rstrip(b"\0\n ").decode("utf-8", "replace")
    if text.count("=") == text.count(" ") + 1:
        # Every token is name=value (above), so here each holds exactly one "=" (a quoted value with
        # an "=" in it fails the count): split once on both separators instead of token by token.
        parts = iter(text.replace(" ", "=").split("="))
        return dict(zip(parts, parts, strict=False))
    out: dict[str, str] = {}
    for token in text.split(" "):
        name, eq, value = token.partition("=")
        if eq:
            out[name] = value
    return out


def syscall_of(payload: bytes, start: int) -> tuple[str, int] | None:
    """(arch, syscall number) of a SYSCALL record, which the kernel always begins with
    ``arch=... syscall=...``; None when the record has another shape."""
    if not payload.startswith(b"arch=", start):
        return None
    space = payload.find(b" ", start + 5)
    if space < 0 or not payload.startswith(b"syscall=", space + 1):
        return None
    end = payload.find(b" ", space + 9)
    try:
        return payload[start + 5 : space].decode("ascii"), int(payload[space + 9 : end if end >= 0 else None])
    except (ValueError, UnicodeDecodeError):
        return None


def parse_record(record_type: int, payload: bytes | str) -> AuditRecord:
    """One record with every field; user-space records go through the quoting-aware regex."""
    raw = payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else payload
    seconds, millis, serial, start = parse_header(raw)
    if AUDIT_USER_FIRST <= record_type <= AUDIT_USER_LAST:
        text = raw[start:].decode("utf-8", "replace").rstrip("\0\n")
        fields = {k: v for k, v in FIELD.findall(text)}
    else:
        fields = parse_fields(raw, start)
    return AuditRecord(record_type, seconds, millis, serial, fields)


def decode_value(raw: str) -> str | None:
    """Decode an untrusted-string value: "quoted" as is, (null) as None, otherwise hex-encoded bytes."""
    if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
        return raw[1:-1]
    if raw == "(null)":
        return None
    if _HEX.match(raw):
        return bytes.fromhex(raw).decode("utf-8", "surrogateescape")
    return raw


def decode_arg(raw: str) -> str:
    """An EXECVE argument: always either "quoted" or hex, so the hex test can be skipped."""
    if raw.startswith('"'):
        return raw[1:-1]
    try:
        return bytes.fromhex(raw).decode("utf-8", "surrogateescape")
    except ValueError:
        return raw
