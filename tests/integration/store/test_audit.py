"""The stored audit chain: appends link up, tampering in the database shows, retention keeps it verifiable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from vigil.store import audit, db
from vigil.store.audit import Change
from vigil.store.schema import audit_log

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_chain_detects_tampering_and_survives_retention(db_url: str, tmp_path: Path) -> None:
    engine = db.make_engine(db_url or f"sqlite:///{tmp_path / 'a.db'}")
    try:
        db.upgrade(engine)
        with engine.begin() as conn:
            for i in range(6):
                audit.append(conn, Change("admin", "device_group.put", "device_group", f"g{i}", before=None,
                                          after={"rank": i, "rules": [{"property": "tag", "value": "ring-x"}]}),
                             T0 + timedelta(days=30 * i))
        with engine.connect() as conn:
            assert audit.verify(conn).ok and audit.verify(conn).checked == 6
        with engine.begin() as conn:
            conn.execute(audit_log.update().where(audit_log.c.seq == 3).values(actor="mallory"))
        with engine.connect() as conn:
            report = audit.verify(conn)
            assert not report.ok and report.first_bad_seq == 3
        with engine.begin() as conn:
            conn.execute(audit_log.update().where(audit_log.c.seq == 3).values(actor="admin"))
            assert audit.purge_older_than(conn, T0 + timedelta(days=100)) == 4
            assert audit.purge_older_than(conn, T0 + timedelta(days=1000)) == 1  # the newest entry stays
        with engine.connect() as conn:
            assert audit.verify(conn).ok
            assert conn.execute(sa.select(sa.func.count()).select_from(audit_log)).scalar_one() == 1
    finally:
        engine.dispose()
