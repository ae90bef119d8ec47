"""The audit log's hash chain: each entry commits to its predecessor, so edits and gaps show."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: datetime
    actor: str
    source_ip: str | None
    action: str
    target_type: str
    target_id: str
    before: Any
    after: Any
    reason: str | None
    prev_hash: str


def entry_hash(entry: AuditEntry) -> str:
    body = asdict(entry)
    at = entry.at if entry.at.tzinfo else entry.at.replace(tzinfo=UTC)
    body["at"] = at.astimezone(UTC).isoformat(timespec="microseconds")
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str | None = None


def verify_chain(entries: Iterable[tuple[AuditEntry, str]], anchor: str | None = None) -> ChainReport:
    """Walk entries in sequence order with their stored hashes.

    The first entry may follow an entry that retention removed; its prev_hash is then the anchor,
    unless the caller passes the anchor it expects (GENESIS for a log never pruned).
    """
    prev_seq: int | None = None
    prev_hash = anchor
    n = 0
    for entry, stored in entries:
        if prev_seq is not None and entry.seq != prev_seq + 1:
            return ChainReport(False, n, entry.seq, f"entry {prev_seq + 1} is missing")
        if prev_hash is not None and entry.prev_hash != prev_hash:
            return ChainReport(False, n, entry.seq, "does not follow the previous entry's hash")
        if entry_hash(entry) != stored:
            return ChainReport(False, n, entry.seq, "content does not match its hash")
        prev_seq, prev_hash = entry.seq, stored
        n += 1
    return ChainReport(True, n)
