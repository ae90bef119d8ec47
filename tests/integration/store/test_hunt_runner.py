"""The hunting runner on real SQLite and PostgreSQL: the time quota stops a query, writes are refused anyway."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from vigil.app.hunting import QueryFailed, QueryTimeout
from vigil.hunt.sql import Scope, check
from vigil.store import db
from vigil.store.hunt import SqlHuntRunner
from vigil.store.schema import telemetry_tables


@pytest.fixture
def engine(db_url: str, tmp_path: Path) -> Iterator[sa.Engine]:
    engine = db.make_engine(db_url or f"sqlite:///{tmp_path / 'h.db'}")
    db.upgrade(engine)
    table = telemetry_tables["DeviceProcessEvents"]
    now = datetime(2026, 12, 1, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(table.insert(), [
            {"Timestamp": now, "DeviceId": f"d{i % 3}", "ActionType": "ProcessCreated", "ReportId": i,
             "FileName": f"f{i}"} for i in range(400)])
    yield engine
    engine.dispose()


def test_a_query_past_its_time_quota_is_stopped_and_the_connection_stays_usable(engine: sa.Engine) -> None:
    runner = SqlHuntRunner(engine)
    q = check("SELECT count(*) FROM DeviceProcessEvents a, DeviceProcessEvents b, DeviceProcessEvents c,"
              " DeviceProcessEvents d", Scope(None), runner.dialect)
    t0 = datetime.now(UTC)
    with pytest.raises(QueryTimeout):
        runner.run(q.sql, 0.5)
    assert (datetime.now(UTC) - t0).total_seconds() < 10
    names, rows = runner.run(check("SELECT count(*) AS n FROM DeviceProcessEvents", Scope(None), runner.dialect).sql,
                             5)
    assert names == ["n"] and rows == [(400,)]
    with engine.begin() as conn:  # the pool's connection is writable again after the read-only run
        conn.execute(telemetry_tables["DeviceProcessEvents"].delete().where(sa.text('"ReportId" = 0')))


def test_the_runner_is_read_only_even_for_sql_that_skipped_the_checks(engine: sa.Engine) -> None:
    runner = SqlHuntRunner(engine)
    with pytest.raises(QueryFailed):
        runner.run('DELETE FROM "DeviceProcessEvents"', 5)
    with engine.connect() as conn:
        assert conn.execute(sa.text('SELECT count(*) FROM "DeviceProcessEvents"')).scalar() == 400
