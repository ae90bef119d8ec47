"""A resend that loses the race to store its batch is told so by the store (DuplicateBatch), in its own words."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from vigil.store import db
from vigil.store.errors import DuplicateBatch
from vigil.store.schema import telemetry_batches
from vigil.store.telemetry import batch_transaction, store_batch, stored_batch

NOW = datetime(2026, 12, 1, tzinfo=UTC)
DEVICE = "d" * 40


def test_losing_the_race_for_a_batch_id_raises_duplicate_batch_and_other_conflicts_stay_raw(
    db_url: str, tmp_path: Path
) -> None:
    engine = db.make_engine(db_url or f"sqlite:///{tmp_path / 'b.db'}")
    try:
        db.upgrade(engine)
        with batch_transaction(engine, DEVICE, "b-1") as conn:
            assert store_batch(conn, DEVICE, "b-1", {}, NOW).duplicate is False
        # The other resend checked before the winner committed, so it inserts the batch row as well.
        with pytest.raises(DuplicateBatch, match="b-1"), batch_transaction(engine, DEVICE, "b-1") as conn:
            conn.execute(telemetry_batches.insert().values(device_id=DEVICE, batch_id="b-1", received_at=NOW,
                                                           event_count=0))
        # A constraint failure that is not a stored batch is no duplicate: raised as it is, nothing kept.
        with pytest.raises(sa.exc.IntegrityError), batch_transaction(engine, DEVICE, "b-2") as conn:
            row = {"device_id": DEVICE, "batch_id": "b-2", "received_at": NOW, "event_count": 0}
            conn.execute(telemetry_batches.insert().values(**row))
            conn.execute(telemetry_batches.insert().values(**row))
        with engine.connect() as conn:
            assert stored_batch(conn, DEVICE, "b-2") is None and stored_batch(conn, DEVICE, "b-1") is not None
    finally:
        engine.dispose()
