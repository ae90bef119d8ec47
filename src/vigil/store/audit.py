"""The append-only audit log: hash-chained inserts, queries, verification and its own retention."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from vigil.core.audit import GENESIS, AuditEntry, ChainReport, entry_hash, verify_chain
from vigil.store.devices import aware
from vigil.store.schema import audit_log

# Appends in one process are serialized here; across processes PostgreSQL takes an advisory lock
# and SQLite's single writer plus the unique prev_hash make a forked chain fail instead of pass.
_append_lock = threading.Lock()
_PG_LOCK_KEY = 0x56494731  # "VIG1"


@dataclass(frozen=True)
class Change:
    """What one audited change was: who did what to which object, before and after, from where."""

    actor: str
    action: str
    target_type: str
    target_id: str
    before: Any = None
    after: Any = None
    reason: str | None = None
    source_ip: str | None = None


def append(conn: sa.Connection, change: Change, now: datetime) -> AuditEntry:
    """Record ``change`` in the caller's transaction, so the change and its record commit together."""
    with _append_lock:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        last = conn.execute(
            sa.select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
        ).first()
        entry = AuditEntry(
            seq=(last.seq + 1) if last else 1, at=now, actor=change.actor, source_ip=change.source_ip,
            action=change.action, target_type=change.target_type, target_id=change.target_id,
            before=change.before, after=change.after, reason=change.reason,
            prev_hash=last.hash if last else GENESIS,
        )
        conn.execute(audit_log.insert().values(**_columns(entry), hash=entry_hash(entry)))
        return entry


def _columns(e: AuditEntry) -> dict[str, Any]:
    return {
        "seq": e.seq, "at": e.at, "actor": e.actor, "source_ip": e.source_ip, "action": e.action,
        "target_type": e.target_type, "target_id": e.target_id, "before": e.before, "after": e.after,
        "reason": e.reason, "prev_hash": e.prev_hash,
    }


def _entry(row: Any) -> AuditEntry:
    return AuditEntry(
        seq=row.seq, at=aware(row.at), actor=row.actor, source_ip=row.source_ip, action=row.action,
        target_type=row.target_type, target_id=row.target_id, before=row.before, after=row.after,
        reason=row.reason, prev_hash=row.prev_hash,
    )


def entry_of(row: Any) -> AuditEntry:
    """An audit_log row as the entry it records."""
    return _entry(row)


def entries(
    conn: sa.Connection, *, since: datetime | None = None, action: str | None = None, limit: int | None = None,
    newest_first: bool = False,
) -> list[tuple[AuditEntry, str]]:
    q = sa.select(audit_log)
    if since is not None:
        q = q.where(audit_log.c.at >= since)
    if action:
        q = q.where(audit_log.c.action == action)
    q = q.order_by(audit_log.c.seq.desc() if newest_first else audit_log.c.seq)
    if limit:
        q = q.limit(limit)
    return [(_entry(r), r.hash) for r in conn.execute(q)]


def iter_all(conn: sa.Connection, page: int = 1000) -> Iterator[tuple[AuditEntry, str]]:
    after = 0
    while True:
        rows = conn.execute(
            sa.select(audit_log).where(audit_log.c.seq > after).order_by(audit_log.c.seq).limit(page)
        ).all()
        if not rows:
            return
        for r in rows:
            yield _entry(r), r.hash
        after = rows[-1].seq


def verify(conn: sa.Connection) -> ChainReport:
    first = conn.execute(sa.select(sa.func.min(audit_log.c.seq))).scalar()
    # A log that still holds entry 1 must start from the genesis hash; a pruned one from its oldest entry.
    return verify_chain(iter_all(conn), anchor=GENESIS if first in (None, 1) else None)


def purge_older_than(conn: sa.Connection, cutoff: datetime) -> int:
    """Retention removes the oldest entries only; the newest entry is always kept, so the chain goes on."""
    newest = conn.execute(sa.select(sa.func.max(audit_log.c.seq))).scalar()
    if newest is None:
        return 0
    res = conn.execute(audit_log.delete().where(audit_log.c.at < cutoff, audit_log.c.seq < newest))
    return int(res.rowcount)
