"""The telemetry store: atomic, idempotent batch inserts and the device timeline."""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from itertools import repeat
from typing import Any

import sqlalchemy as sa

from vigil.core.telemetry import TABLES
from vigil.store.errors import DuplicateBatch
from vigil.store.schema import telemetry_batches, telemetry_tables


@dataclass(frozen=True)
class StoredBatch:
    accepted: int
    duplicate: bool


_COLUMNS = {name: TABLES[name].column_names for name in TABLES}

ColumnConverter = Callable[[list[Any]], list[Any]]
_first_26 = operator.itemgetter(slice(0, 26))


def _sqlite_datetimes(process: Callable[[Any], Any]) -> ColumnConverter:
    """SQLAlchemy's SQLite DATETIME text ('2026-11-28 09:00:00.000001') for a whole column at once.

    isoformat always writes the microseconds and [:26] drops the offset, exactly what SQLAlchemy's
    processor stores; mapping C functions over the column avoids its per-value %-formatting.
    """

    def convert(values: list[Any]) -> list[Any]:
        if set(map(type, values)) == {datetime}:
            return list(map(_first_26, map(datetime.isoformat, values, repeat(" "), repeat("microseconds"))))
        return [None if v is None else process(v) for v in values]

    return convert


def _each(process: Callable[[Any], Any]) -> ColumnConverter:
    def convert(values: list[Any]) -> list[Any]:
        return [None if v is None else process(v) for v in values]

    return convert


@cache
def _insert_plan(dialect: sa.Dialect, table: str) -> tuple[str, tuple[tuple[int, ColumnConverter], ...]]:
    """The driver-level INSERT for ``table`` and converters for the columns that need them.

    Going to the DB-API cursor skips SQLAlchemy's per-row parameter processing, the main cost of
    ingest; the conversions kept are SQLAlchemy's own bind processors (or exact equivalents).
    """
    quote = dialect.identifier_preparer.quote
    cols = _COLUMNS[table]
    if dialect.paramstyle == "qmark":
        marks = ", ".join("?" * len(cols))
    elif dialect.paramstyle in ("format", "pyformat"):
        marks = ", ".join(["%s"] * len(cols))
    else:
        raise NotImplementedError(f"paramstyle {dialect.paramstyle} of {dialect.name}")
    sql = f"INSERT INTO {quote(table)} ({', '.join(map(quote, cols))}) VALUES ({marks})"
    converters: list[tuple[int, ColumnConverter]] = []
    for i, name in enumerate(cols):
        col_type = telemetry_tables[table].c[name].type
        process = col_type.dialect_impl(dialect).bind_processor(dialect)
        if process is None:
            continue
        if dialect.name == "sqlite" and isinstance(col_type, sa.DateTime):
            converters.append((i, _sqlite_datetimes(process)))
        else:
            converters.append((i, _each(process)))
    return sql, tuple(converters)


def _parameters(
    rows: list[dict[str, Any]], cols: tuple[str, ...], converters: tuple[tuple[int, ColumnConverter], ...]
) -> list[tuple[Any, ...]]:
    """Positional parameter tuples, built column by column so the loops run in C."""
    columns = [list(map(dict.get, rows, repeat(c))) for c in cols]
    for i, convert in converters:
        columns[i] = convert(columns[i])
    return list(zip(*columns, strict=True))


def stored_batch(conn: sa.Connection, device_id: str, batch_id: str) -> StoredBatch | None:
    """The batch as already stored (a duplicate), or None when this batch id is new."""
    seen = conn.execute(
        sa.select(telemetry_batches.c.event_count).where(
            telemetry_batches.c.device_id == device_id, telemetry_batches.c.batch_id == batch_id
        )
    ).first()
    return None if seen is None else StoredBatch(int(seen.event_count), duplicate=True)


@contextmanager
def batch_transaction(engine: sa.Engine, device_id: str, batch_id: str) -> Iterator[sa.Connection]:
    """The transaction a batch is stored in; a concurrent resend that won the race raises ``DuplicateBatch``.

    Both resends insert the batch row first, so the loser fails on its primary key. Any other constraint
    failure is raised as it is: an error the agent must see, so it keeps the batch and resends it.
    """
    try:
        with engine.begin() as conn:
            yield conn
    except sa.exc.IntegrityError as e:
        with engine.connect() as conn:
            if stored_batch(conn, device_id, batch_id) is None:
                raise
        raise DuplicateBatch(f"batch {batch_id!r} of device {device_id!r} is already stored") from e


def store_batch(
    conn: sa.Connection, device_id: str, batch_id: str, rows_by_table: dict[str, list[dict[str, Any]]],
    now: datetime,
) -> StoredBatch:
    """Store a validated batch in the caller's transaction; a batch id already seen stores nothing.

    The batch row is inserted first so that a concurrent resend of the same batch fails on the
    primary key and rolls back, rather than storing the events twice.
    """
    seen = stored_batch(conn, device_id, batch_id)
    if seen is not None:
        return seen
    count = sum(len(r) for r in rows_by_table.values())
    conn.execute(
        telemetry_batches.insert().values(
            device_id=device_id, batch_id=batch_id, received_at=now, event_count=count
        )
    )
    for table, rows in rows_by_table.items():
        if not rows:
            continue
        sql, converters = _insert_plan(conn.dialect, table)
        conn.exec_driver_sql(sql, _parameters(rows, _COLUMNS[table], converters))
    return StoredBatch(count, duplicate=False)


def insert_rows(conn: sa.Connection, table: str, rows: list[dict[str, Any]]) -> None:
    """Validated rows outside any agent batch (the server's own events), in the caller's transaction."""
    sql, converters = _insert_plan(conn.dialect, table)
    conn.exec_driver_sql(sql, _parameters(rows, _COLUMNS[table], converters))


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
