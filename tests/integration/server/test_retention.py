"""Retention deletes telemetry past the window and keeps the rest."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from vigil.config import load_settings
from vigil.core.clock import FixedClock, SystemClock
from vigil.core.telemetry import validate_events
from vigil.deploy.setup import run_setup
from vigil.server.app import create_app
from vigil.server.retention import purge_once
from vigil.store.devices import ensure_default_group
from vigil.store.telemetry import count_rows, store_batch


def test_purge_respects_the_retention_window(tmp_path: Path) -> None:
    run_setup(tmp_path, SystemClock(), overrides={"retention_days": 30})
    now = datetime(2026, 11, 28, tzinfo=UTC)
    app = create_app(load_settings(tmp_path), clock=FixedClock(now))
    svc = app.state.services
    rows = validate_events(
        [
            {"table": "DeviceEvents", "Timestamp": ts, "DeviceId": "d1", "ActionType": "AgentStarted", "ReportId": i}
            for i, ts in enumerate(["2026-10-01T00:00:00Z", "2026-10-30T00:00:00Z", "2026-11-27T00:00:00Z"])
        ],
        "d1",
    )
    with svc.engine.begin() as conn:
        ensure_default_group(conn, now)
        store_batch(conn, "d1", "batch-0001", rows, now)
    assert purge_once(svc) == 1
    with svc.engine.connect() as conn:
        assert count_rows(conn, "DeviceEvents") == 2
