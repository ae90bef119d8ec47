"""The server runs the content store's rules: what is switched on, at its level, per device group."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from tests.unit.content.test_store import CURL, NC, WGET, _release
from vigil.config import load_settings
from vigil.content.store import ContentStore, content_root
from vigil.core.clock import FixedClock, SystemClock
from vigil.core.telemetry import validate_events
from vigil.deploy.setup import run_setup
from vigil.server.app import create_app
from vigil.store.devices import create_group, ensure_default_group
from vigil.store.schema import alerts, devices

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)


def _device(conn: sa.Connection, device_id: str, group_id: int) -> None:
    conn.execute(devices.insert().values(
        id=device_id, computer_dns_name=device_id, os_platform="Linux", group_id=group_id, tags=[], agent_tags=[],
        credential_hash="x" * 64, first_seen=NOW, last_seen=NOW, counters={}, sensors={}))


def _exec(device_id: str, binary: str, n: int) -> dict[str, list[dict[str, object]]]:
    return validate_events([{"table": "DeviceProcessEvents", "Timestamp": "2026-11-28T11:00:00Z",
                             "DeviceId": device_id, "ActionType": "ProcessCreated", "ReportId": n,
                             "FileName": binary, "FolderPath": f"/usr/bin/{binary}",
                             "ProcessCommandLine": binary}], device_id)


def test_live_detection_follows_the_content_store_per_device_group(tmp_path: Path) -> None:
    run_setup(tmp_path, SystemClock())
    store = ContentStore(content_root(tmp_path))
    store.import_release(_release(tmp_path / "release"))
    store.set_enabled(["sigmahq/rules/linux/net"], False, group="web")  # nc and curl off on web servers
    store.set_enabled([CURL], True)  # experimental: off by default, on store-wide
    store.set_level(WGET, "critical", group="web")
    app = create_app(load_settings(tmp_path), clock=FixedClock(NOW))
    svc = app.state.services
    with svc.engine.begin() as conn:
        _device(conn, "d-office", ensure_default_group(conn, NOW))
        _device(conn, "d-web", create_group(conn, "web", NOW))
    n = 0
    for device in ("d-office", "d-web"):
        for binary in ("nc", "curl", "wget"):
            n += 1
            svc.ingest.ingest(device, f"batch-{n:04d}", _exec(device, binary, n))
    with svc.engine.connect() as conn:
        fired = {(r.machine_id, r.rule_id, r.severity) for r in conn.execute(
            sa.select(alerts.c.machine_id, alerts.c.rule_id, alerts.c.severity))}
    assert fired == {("d-office", NC, "High"), ("d-office", CURL, "High"), ("d-office", WGET, "Low"),
                     ("d-web", WGET, "High")}  # critical is Defender's High
