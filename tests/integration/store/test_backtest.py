"""Back-testing over real SQLite and PostgreSQL: a rule run over stored history counts exactly the alerts it
raises when the same rows are then replayed through live ingest and detection."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from vigil.app import backtest as app_backtest
from vigil.app.errors import InvalidInput
from vigil.app.principal import Principal
from vigil.app.stores import sql_store
from vigil.core.clock import FixedClock
from vigil.core.rbac import Permission
from vigil.core.telemetry import validate_events
from vigil.detect import load_rules
from vigil.server.detection import LiveDetection
from vigil.server.ingest import IngestPipeline
from vigil.store import db
from vigil.store.devices import create_group, ensure_default_group
from vigil.store.history import SqlHistory
from vigil.store.schema import alerts, devices

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)
ADMIN = Principal("admin", frozenset(Permission), None, is_admin=True, username="admin")
RULE_ID = "5b0e6c1e-7d2a-4f57-9a55-0c8e5d3f1a11"
RULE = f"""title: Netcat Listener
id: {RULE_ID}
status: test
description: nc listening for a connection
tags:
    - attack.execution
    - attack.t1059.004
logsource:
    product: linux
    category: process_creation
detection:
    selection:
        Image|endswith: '/nc'
        CommandLine|contains: ' -l'
    condition: selection
level: high
"""
# (device, minutes before NOW, binary, command line): hits 30 minutes apart fold, 3 hours apart do not.
HISTORY = [
    ("dev-a", 600, "nc", "nc -l 4444"), ("dev-a", 570, "nc", "nc -l 4445"), ("dev-a", 390, "nc", "nc -lv 9001"),
    ("dev-a", 380, "ls", "ls -l /tmp"), ("dev-a", 100, "nc", "nc example.org 80"),
    ("dev-b", 595, "nc", "nc -l 8080"), ("dev-b", 20, "bash", "bash -l"),
    ("dev-a", 60 * 24 * 9, "nc", "nc -l 1"),  # older than the 7 days back-tested
]


def _engine(url: str, path: Path) -> sa.Engine:
    engine = db.make_engine(url or f"sqlite:///{path}")
    db.upgrade(engine)
    with engine.begin() as conn:
        office, web = ensure_default_group(conn, NOW), create_group(conn, "web", NOW)
        for dev, group in (("dev-a", office), ("dev-b", web)):
            conn.execute(devices.insert().values(
                id=dev, computer_dns_name=dev, os_platform="Linux", group_id=group, tags=[], agent_tags=[],
                credential_hash="x" * 64, first_seen=NOW, last_seen=NOW, counters={}, sensors={}))
    return engine


def _ingest(pipeline: IngestPipeline) -> None:
    for device in ("dev-a", "dev-b"):
        mine = sorted((m for m in HISTORY if m[0] == device), key=lambda m: -m[1])
        events = [{"table": "DeviceProcessEvents", "Timestamp": (NOW - timedelta(minutes=mins)).isoformat(),
                   "DeviceId": device, "ActionType": "ProcessCreated", "ReportId": i + 1, "FileName": binary,
                   "FolderPath": f"/usr/bin/{binary}", "ProcessCommandLine": cmd}
                  for i, (_, mins, binary, cmd) in enumerate(mine)]
        pipeline.ingest(device, f"{device}-1", validate_events(events, device, NOW))


@pytest.fixture
def rule_file(tmp_path: Path) -> Path:
    (tmp_path / "rules").mkdir()
    path = tmp_path / "rules" / "netcat.yml"
    path.write_text(RULE)
    return path


def test_the_backtest_count_equals_the_alerts_a_live_replay_raises(db_url: str, tmp_path: Path,
                                                                   rule_file: Path) -> None:
    report = load_rules([rule_file])
    assert not report.errors and len(report.ruleset) == 1
    history = _engine(db_url, tmp_path / "history.db")
    try:
        _ingest(IngestPipeline(history, FixedClock(NOW)))  # stored with no detection at all
        progress: list[tuple[int, int | None]] = []
        result = app_backtest.backtest(sql_store(history), SqlHistory(history), FixedClock(NOW), ADMIN,
                                       report.ruleset, None, 7, lambda done, total: progress.append((done, total)))
        with sql_store(history).begin() as uow:
            assert [r.after["alerts"] for r in uow.audit.entries("rules.backtest")] == [result["alerts"]]
    finally:
        history.dispose()
    assert result["events"] == 7 and progress[-1] == (7, 7)
    [rule] = result["rules"]
    assert rule["ruleId"] == RULE_ID and rule["hits"] == 4 and len(rule["samples"]) == rule["alerts"]

    if db_url:  # PostgreSQL: replay into a fresh schema of the same database
        wipe = sa.create_engine(db_url)
        with wipe.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        wipe.dispose()
    live = _engine(db_url, tmp_path / "live.db")
    try:
        _ingest(IngestPipeline(live, FixedClock(NOW), LiveDetection(report.ruleset)))
        with live.connect() as conn:
            raised = Counter(r.machine_id for r in conn.execute(
                sa.select(alerts.c.machine_id).where(alerts.c.rule_id == RULE_ID, alerts.c.first_event_time >=
                                                     NOW - timedelta(days=7))))
    finally:
        live.dispose()
    assert result["alerts"] == sum(raised.values()) and result["alerts"] > 1
    assert rule["devices"] == dict(raised)


def test_a_scoped_backtest_reads_only_its_groups_and_bad_input_is_refused(db_url: str, tmp_path: Path,
                                                                          rule_file: Path) -> None:
    ruleset = load_rules([rule_file]).ruleset
    engine = _engine(db_url, tmp_path / "h.db")
    try:
        _ingest(IngestPipeline(engine, FixedClock(NOW)))
        with engine.connect() as conn:
            web = conn.execute(sa.select(devices.c.group_id).where(devices.c.id == "dev-b")).scalar_one()
        scoped = Principal("wendy", frozenset({Permission.VIEW_DATA_SECOPS}), frozenset({web}), username="wendy")
        result = app_backtest.backtest(sql_store(engine), SqlHistory(engine), FixedClock(NOW), scoped, ruleset,
                                       None, 7)
        assert result["events"] == 2 and [r["devices"] for r in result["rules"]] == [{"dev-b": 1}]
        with pytest.raises(InvalidInput):
            app_backtest.backtest(sql_store(engine), SqlHistory(engine), FixedClock(NOW), ADMIN, ruleset, None, 0)
        with pytest.raises(InvalidInput) as e:
            app_backtest.backtest(sql_store(engine), SqlHistory(engine), FixedClock(NOW), ADMIN, ruleset,
                                  ["no-such-rule"], 7)
        assert e.value.field == "rule"
    finally:
        engine.dispose()
