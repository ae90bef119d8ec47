"""Stored telemetry read back in order, for back-testing rules over history (``vigil.app.backtest``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from vigil.store.devices import aware
from vigil.store.schema import devices, telemetry_tables


class SqlHistory:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def _where(self, t: sa.Table, since: datetime, group_ids: frozenset[int] | None) -> list[Any]:
        cond: list[Any] = [t.c.Timestamp >= since]
        if group_ids is not None:
            cond.append(t.c.DeviceId.in_(sa.select(devices.c.id).where(devices.c.group_id.in_(sorted(group_ids)))))
        return cond

    def count(self, tables: Sequence[str], since: datetime, group_ids: frozenset[int] | None) -> int:
        with self.engine.connect() as conn:
            return sum(int(conn.execute(sa.select(sa.func.count()).select_from(t).where(
                *self._where(t, since, group_ids))).scalar_one()) for t in (telemetry_tables[n] for n in tables))

    def rows(self, tables: Sequence[str], since: datetime, group_ids: frozenset[int] | None,
             page: int = 5_000) -> Iterator[tuple[str, dict[str, Any]]]:
        """Each table's rows per device in time and ReportId order (as the agent sent them), streamed."""
        for name in tables:
            t = telemetry_tables[name]
            q = (sa.select(t).where(*self._where(t, since, group_ids))
                 .order_by(t.c.DeviceId, t.c.Timestamp, t.c.ReportId))
            with self.engine.connect() as conn:
                result = conn.execution_options(stream_results=True, yield_per=page).execute(q)
                for r in result.mappings():
                    row = dict(r)
                    if isinstance(row.get("Timestamp"), datetime):
                        row["Timestamp"] = aware(row["Timestamp"])
                    yield name, row
