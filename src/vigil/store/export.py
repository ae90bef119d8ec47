"""Streaming export in the database: destinations with their durable cursor, and the outbox the exporters read.

The outbox is written in the ingest transaction (a batch's rows, the ids of the alerts it opened), so what is
stored is exported and nothing else; each destination's cursor is the outbox seq it has delivered up to.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from vigil.app.ports import AuditRecord
from vigil.app.streaming import Destination, NewDestination
from vigil.store import audit
from vigil.store.devices import aware
from vigil.store.schema import alerts, export_destinations, export_outbox

dest = export_destinations
outbox = export_outbox


def _ts(v: Any) -> datetime | None:
    return aware(v) if v is not None else None


def _destination(row: Any) -> Destination:
    return Destination(
        id=int(row.id), name=row.name, kind=row.kind, settings=dict(row.config), tables=tuple(row.tables),
        enabled=bool(row.enabled), created_by=row.created_by, created_at=aware(row.created_at), cursor=int(row.cursor),
        sent=int(row.sent), failed=int(row.failed), attempts=int(row.attempts), last_error=row.last_error,
        last_error_at=_ts(row.last_error_at), last_sent_at=_ts(row.last_sent_at),
        next_attempt_at=_ts(row.next_attempt_at),
    )


def head(conn: sa.Connection) -> int:
    """The newest outbox seq (0 when empty): where a new destination starts."""
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(outbox.c.seq), 0))).scalar_one())


def any_enabled(conn: sa.Connection) -> bool:
    return conn.execute(sa.select(dest.c.id).where(dest.c.enabled.is_(True)).limit(1)).first() is not None


def _json_safe(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value


def write_outbox(conn: sa.Connection, rows: dict[str, list[dict[str, Any]]], new_alert_ids: Sequence[str],
                 now: datetime) -> None:
    """One outbox row for a stored batch: ``[[table, row], ...]`` then ``["AlertInfo", {"id": ...}]`` per alert."""
    records: list[list[Any]] = [[table, {k: _json_safe(v) for k, v in row.items() if k != "table"}]
                                for table, table_rows in rows.items() for row in table_rows]
    records += [["AlertInfo", {"id": a}] for a in new_alert_ids]
    if records:
        conn.execute(outbox.insert().values(created_at=now, records=records))


@dataclass(frozen=True)
class OutboxRow:
    seq: int
    records: list[list[Any]]


# A seq not committed yet (a concurrent transaction on PostgreSQL) leaves a gap that fills when it commits; a rolled
# back one leaves it for good. Reading stops at a gap younger than this, so a late commit is never skipped.
GAP_WAIT = timedelta(seconds=10)


def pending(conn: sa.Connection, after: int, max_records: int, now: datetime) -> list[OutboxRow]:
    """Outbox rows after ``after`` in order, whole rows only, up to about ``max_records`` records (at least one row)."""
    out: list[OutboxRow] = []
    total, expect = 0, after + 1
    q = (sa.select(outbox.c.seq, outbox.c.created_at, outbox.c.records).where(outbox.c.seq > after)
         .order_by(outbox.c.seq).limit(500))
    for row in conn.execute(q):
        if int(row.seq) != expect and aware(row.created_at) > now - GAP_WAIT:
            break
        if out and total + len(row.records) > max_records:
            break
        out.append(OutboxRow(int(row.seq), list(row.records)))
        total += len(row.records)
        expect = int(row.seq) + 1
    return out


def alert_rows(conn: sa.Connection, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The alerts' API-shaped fields the AlertInfo records carry, by id (read when sent: the current state)."""
    if not ids:
        return {}
    found = {}
    for r in conn.execute(sa.select(alerts).where(alerts.c.id.in_(list(ids)))):
        found[r.id] = {"id": r.id, "alertCreationTime": _json_safe(aware(r.alert_creation_time)), "title": r.title,
                       "category": r.category, "severity": r.severity, "detectionSource": r.detection_source,
                       "mitreTechniques": list(r.mitre_techniques or []), "machineId": r.machine_id,
                       "detectorId": r.rule_id, "description": r.description}
    return found


def delivered(conn: sa.Connection, dest_id: int, cursor: int, count: int, now: datetime) -> None:
    """The batch up to ``cursor`` reached the receiver: move the cursor (only ever forward) and count it."""
    conn.execute(dest.update().where(dest.c.id == dest_id, dest.c.cursor < cursor).values(
        cursor=cursor, sent=dest.c.sent + count, attempts=0, next_attempt_at=None, last_sent_at=now))


def failed(conn: sa.Connection, dest_id: int, count: int, error: str, now: datetime, retry_at: datetime) -> int:
    """Record a failed attempt; returns the attempt number (for the back-off)."""
    conn.execute(dest.update().where(dest.c.id == dest_id).values(
        failed=dest.c.failed + count, attempts=dest.c.attempts + 1, last_error=error[:2000], last_error_at=now,
        next_attempt_at=retry_at))
    return int(conn.execute(sa.select(dest.c.attempts).where(dest.c.id == dest_id)).scalar_one())


def prune(conn: sa.Connection, keep_hours: float, now: datetime) -> int:
    """Delete outbox rows every enabled destination has delivered; with none enabled, rows older than the window.

    A disabled destination does not hold the outbox: when it is enabled again it resumes from where it stopped,
    and what was pruned meanwhile is gone for it (its status shows the gap as lag reset).
    """
    low = conn.execute(sa.select(sa.func.min(dest.c.cursor)).where(dest.c.enabled.is_(True))).scalar_one()
    cond = outbox.c.created_at < now - timedelta(hours=keep_hours) if low is None else outbox.c.seq <= int(low)
    return int(conn.execute(outbox.delete().where(cond)).rowcount)


class SqlDestinations:
    """``vigil.app.streaming.DestinationUnit`` on one connection."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def listing(self) -> Sequence[Destination]:
        return [_destination(r) for r in self._c.execute(sa.select(dest).order_by(dest.c.id))]

    def get(self, dest_id: int) -> Destination | None:
        row = self._c.execute(sa.select(dest).where(dest.c.id == dest_id)).first()
        return _destination(row) if row else None

    def named(self, name: str) -> Destination | None:
        row = self._c.execute(sa.select(dest).where(dest.c.name == name)).first()
        return _destination(row) if row else None

    def create(self, new: NewDestination, now: datetime) -> Destination:
        res = self._c.execute(dest.insert().values(
            name=new.name, kind=new.kind, config=dict(new.settings), tables=list(new.tables), enabled=new.enabled,
            created_by=new.created_by, created_at=now, cursor=head(self._c), sent=0, failed=0, attempts=0))
        found = self.get(int(res.inserted_primary_key[0]))  # type: ignore[index]
        assert found is not None
        return found

    def set_enabled(self, dest_id: int, enabled: bool) -> None:
        self._c.execute(dest.update().where(dest.c.id == dest_id).values(enabled=enabled))

    def delete(self, dest_id: int) -> None:
        self._c.execute(dest.delete().where(dest.c.id == dest_id))

    def head(self) -> int:
        return head(self._c)

    def audit(self, record: AuditRecord, now: datetime) -> None:
        audit.append(self._c, audit.Change(record.actor, record.action, record.target_type, record.target_id,
                                           before=record.before, after=record.after, reason=record.reason,
                                           source_ip=record.source_ip), now)


class SqlDestinationStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @contextmanager
    def begin(self) -> Iterator[SqlDestinations]:
        with self.engine.begin() as conn:
            yield SqlDestinations(conn)
