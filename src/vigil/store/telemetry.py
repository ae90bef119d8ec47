"""The telemetry store: atomic, idempotent batch inserts and the device timeline."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from vigil.core.telemetry import TABLES
from vigil.store.schema import telemetry_batches, telemetry_tables


@dataclass(frozen=True)
class StoredBatch:
    accepted: int
    duplicate: bool


_COLUMNS = {name: TABLES[name].column_names for name in TABLES}


def store_batch(
    conn: sa.Connection, device_id: str, batch_id: str, rows_by_table: dict[str, list[dict[str, Any]]],
    now: datetime,
) -> StoredBatch:
    """Store a validated batch in the caller's transaction; a batch id already seen stores nothing.

    The batch row is inserted first so that a concurrent resend of the same batch fails on the
    primary key and rolls back, rather than storing the events twice.
    """
    seen = conn.execute(
        sa.select(telemetry_batches.c.event_count).where(
            telemetry_batches.c.device_id == device_id, telemetry_batches.c.batch_id == batch_id
        )
    ).first()
    if seen is not None:
        return StoredBatch(int(seen.event_count), duplicate=True)
    count = sum(len(r) for r in rows_by_table.values())
    conn.execute(
        telemetry_batches.insert().values(
            device_id=device_id, batch_id=batch_id, received_at=now, event_count=count
        )
    )
    for table, rows in rows_by_table.items():
        cols = _COLUMNS[table]
        # executemany needs every row to bind the same parameters.
        full = [{c: r.get(c) for c in cols} for r in rows]
        conn.execute(telemetry_tables[table].insert(), full)
    return StoredBatch(count, duplicate=False)


def timeline(
    conn: sa.Connection, device_id: str, start: datetime | None, end: datetime | None,
    tables: list[str] | None = None, limit: int = 1000,
) -> list[dict[str, Any]]:
    """Events of one device across telemetry tables, newest first."""
    out: list[dict[str, Any]] = []
    for name in tables or list(telemetry_tables):
        t = telemetry_tables[name]
        q = sa.select(t).where(t.c.DeviceId == device_id)
        if start is not None:
            q = q.where(t.c.Timestamp >= start)
        if end is not None:
            q = q.where(t.c.Timestamp < end)
        q = q.order_by(t.c.Timestamp.desc()).limit(limit)
        for row in conn.execute(q).mappings():
            d = {k: v for k, v in row.items() if v is not None}
            d["Table"] = name
            out.append(d)
    out.sort(key=lambda r: r["Timestamp"], reverse=True)
    return out[:limit]


def count_rows(conn: sa.Connection, table: str, device_id: str | None = None) -> int:
    t = telemetry_tables[table]
    q = sa.select(sa.func.count()).select_from(t)
    if device_id is not None:
        q = q.where(t.c.DeviceId == device_id)
    return int(conn.execute(q).scalar_one())


def purge_older_than(conn: sa.Connection, cutoff: datetime) -> int:
    """Retention: delete telemetry older than ``cutoff``; returns rows deleted."""
    n = 0
    for t in telemetry_tables.values():
        n += conn.execute(t.delete().where(t.c.Timestamp < cutoff)).rowcount
    conn.execute(telemetry_batches.delete().where(telemetry_batches.c.received_at < cutoff))
    return n
