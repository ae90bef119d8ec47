"""The what-if replay over telemetry stored first through the real store (SQLite, and PostgreSQL with --pg)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from vigil.app import asr as asr_service
from vigil.app.errors import Forbidden, InvalidInput, NotFound
from vigil.app.principal import Principal, local_cli
from vigil.app.stores import hunt_runner, sql_store
from vigil.core.clock import FixedClock
from vigil.core.rbac import Permission
from vigil.store import db
from vigil.store.telemetry import store_batch

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _proc(i: int, device: str, path: str, cmd: str, parent: str, age: timedelta) -> dict[str, Any]:
    return {
        "Timestamp": NOW - age,
        "DeviceId": device,
        "DeviceName": f"{device}.lab",
        "ActionType": "ProcessCreated",
        "ReportId": i,
        "FileName": path.rsplit("/", 1)[-1],
        "FolderPath": path,
        "ProcessCommandLine": cmd,
        "InitiatingProcessFileName": parent.rsplit("/", 1)[-1],
        "InitiatingProcessFolderPath": parent,
    }


@pytest.fixture
def engine(db_url: str, tmp_path: Path) -> Iterator[sa.Engine]:
    engine = db.make_engine(db_url or f"sqlite:///{tmp_path / 'w.db'}")
    db.upgrade(engine)
    hour, day = timedelta(hours=1), timedelta(days=1)
    batches = {
        "dev-a": [
            _proc(1, "dev-a", "/tmp/x", "/tmp/x --fast", "/usr/bin/bash", hour),
            _proc(2, "dev-a", "/tmp/x", "/tmp/x --fast", "/usr/bin/bash", 2 * hour),
            _proc(3, "dev-a", "/usr/bin/ls", "ls /tmp", "/usr/bin/bash", hour),  # benign neighbour
            _proc(4, "dev-a", "/dev/shm/m", "m", "/usr/bin/bash", 10 * day),  # older than the window
        ],
        "dev-b": [
            _proc(1, "dev-b", "/usr/bin/python3", "python3 /var/tmp/s.py", "/usr/sbin/cron", 3 * day),
            _proc(2, "dev-b", "/usr/bin/python3", "python3 /usr/lib/s.py", "/usr/sbin/cron", 3 * day),
        ],
    }
    with engine.begin() as conn:
        for device, rows in batches.items():
            store_batch(conn, device, f"b-{device}", {"DeviceProcessEvents": rows}, NOW)
    yield engine
    engine.dispose()


def test_the_replay_returns_exactly_the_rows_a_block_would_have_stopped(engine: sa.Engine) -> None:
    store = sql_store(engine)
    result = asr_service.whatif(
        store, hunt_runner(store), FixedClock(NOW), local_cli("t"), "ExecFromTempOrRemovable", 7
    )
    got = [(h.device_id, h.process, h.command_line, h.count) for h in result.hits]
    assert got == [("dev-a", "/tmp/x", "/tmp/x --fast", 2), ("dev-b", "/usr/bin/python3", "python3 /var/tmp/s.py", 1)]
    assert result.total == 3 and result.rows_scanned == 5 and not result.truncated
    wide = asr_service.whatif(
        store, hunt_runner(store), FixedClock(NOW), local_cli("t"), "526f17ee-978f-439f-985b-be868343db39", 30
    )
    assert wide.total == 4  # the /dev/shm run ten days ago is in a 30-day window
    other = asr_service.whatif(store, hunt_runner(store), FixedClock(NOW), local_cli("t"), "ServerChildShell", 30)
    assert other.hits == ()


def test_the_replay_is_scoped_permission_checked_and_validated(engine: sa.Engine) -> None:
    store = sql_store(engine)
    runner, clock = hunt_runner(store), FixedClock(NOW)
    no_view = Principal("user:bob", frozenset({Permission.ALERTS_INVESTIGATION}), None)
    with pytest.raises(Forbidden):
        asr_service.whatif(store, runner, clock, no_view, "ExecFromTempOrRemovable", 7)
    with pytest.raises(NotFound, match="known rules"):
        asr_service.whatif(store, runner, clock, local_cli("t"), "NoSuchRule", 7)
    for bad in (0, 181, -1):
        with pytest.raises(InvalidInput, match="days"):
            asr_service.whatif(store, runner, clock, local_cli("t"), "ExecFromTempOrRemovable", bad)
