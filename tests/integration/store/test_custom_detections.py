"""Custom detection rules over real SQLite and PostgreSQL with a fixed clock: the schedule, the lookback, the
(rule, DeviceId, ReportId) dedup, the creator's device groups, runs recorded, and a failing rule switched off
with an alert for the administrators."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from vigil.app import detections as svc
from vigil.app.errors import Forbidden, InvalidInput
from vigil.app.principal import Principal
from vigil.app.stores import sql_store
from vigil.core.clock import FixedClock
from vigil.core.rbac import Permission
from vigil.hunt.detections import MAX_FAILURES, check_fields
from vigil.store import db
from vigil.store.detections import DISABLED_RULE_ID, SqlDetections
from vigil.store.devices import create_group, ensure_default_group
from vigil.store.hunt import SqlHuntRunner
from vigil.store.schema import alerts, devices, telemetry_tables

T0 = datetime(2026, 12, 7, 12, tzinfo=UTC)
ADMIN = Principal("admin", frozenset(Permission), None, is_admin=True, username="admin")
QUERY = "DeviceProcessEvents | where FileName == 'nc' | project Timestamp, DeviceId, ReportId, ProcessCommandLine"


@pytest.fixture
def engine(db_url: str, tmp_path: Path) -> Iterator[sa.Engine]:
    engine = db.make_engine(db_url or f"sqlite:///{tmp_path / 'd.db'}")
    db.upgrade(engine)
    with engine.begin() as conn:
        web = ensure_default_group(conn, T0)
        other = create_group(conn, "Other", T0)
        for dev, group in (("dev-a", web), ("dev-b", other)):
            conn.execute(devices.insert().values(
                id=dev, computer_dns_name=dev, os_platform="Linux", group_id=group, tags=[], agent_tags=[],
                credential_hash="x" * 64, first_seen=T0, last_seen=T0, counters={}, sensors={}))
    yield engine
    engine.dispose()


def _events(engine: sa.Engine, at: datetime, start: int, device: str = "dev-a", name: str = "nc") -> None:
    with engine.begin() as conn:
        conn.execute(telemetry_tables["DeviceProcessEvents"].insert(), [
            {"Timestamp": at, "DeviceId": device, "ActionType": "ProcessCreated", "ReportId": start + i,
             "FileName": name, "ProcessCommandLine": f"{name} -l {4000 + i}"} for i in range(2)])


def _fields(**kw: object) -> object:
    base = {"display_name": "netcat listener", "query_text": QUERY, "period": "1H", "enabled": True,
            "title": "Netcat listener", "description": "nc -l", "severity": "high", "category": "Execution",
            "techniques": ["t1059.004"]}
    return check_fields(**{**base, **kw})  # type: ignore[arg-type]


def _custom_alerts(engine: sa.Engine, rule_id: str) -> list[sa.Row[object]]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(alerts).where(alerts.c.rule_id == rule_id).order_by(alerts.c.machine_id)))


def test_a_rule_fires_on_its_schedule_once_per_device_and_report(engine: sa.Engine) -> None:
    store, repo, runner = sql_store(engine), SqlDetections(engine), SqlHuntRunner(engine)
    clock = FixedClock(T0)
    _events(engine, T0 - timedelta(hours=1), 1)
    _events(engine, T0 - timedelta(hours=1), 1, device="dev-b")
    _events(engine, T0 - timedelta(hours=9), 50)  # outside the 1H rule's 4 h lookback
    _events(engine, T0 - timedelta(minutes=5), 70, name="ls")  # not matched
    d = svc.create_detection(store, repo, runner, clock, ADMIN, _fields())  # type: ignore[arg-type]
    assert d.fields.severity == "High" and d.fields.techniques == ("T1059.004",)

    [run] = svc.run_due(repo, runner, clock)
    assert (run.status, run.rows, run.new_hits) == ("completed", 4, 4)
    assert svc.run_due(repo, runner, clock) == []  # not due again within its hour
    raised = _custom_alerts(engine, d.rule_id)
    # The hits of one device fold into one alert with the rule's fields.
    assert [(a.machine_id, a.event_count, a.severity, a.mitre_techniques, a.detection_source) for a in raised] == [
        ("dev-a", 2, "High", ["T1059.004"], "CustomDetection"), ("dev-b", 2, "High", ["T1059.004"],
                                                                  "CustomDetection")]
    assert raised[0].title == "Netcat listener" and raised[0].evidence[0]["ProcessCommandLine"].startswith("nc -l")

    clock.at = T0 + timedelta(hours=1)
    _events(engine, T0 + timedelta(minutes=30), 90)
    [again] = svc.run_due(repo, runner, clock)
    # The same (DeviceId, ReportId) rows are still in the lookback: only the two new ones count.
    assert (again.rows, again.new_hits) == (6, 2)
    assert sum(a.event_count for a in _custom_alerts(engine, d.rule_id)) == 6
    assert [r["newHits"] for r in repo.runs(d.id)] == [2, 4]


def test_a_rule_sees_only_its_makers_device_groups(engine: sa.Engine) -> None:
    store, repo, runner = sql_store(engine), SqlDetections(engine), SqlHuntRunner(engine)
    with engine.connect() as conn:
        web = conn.execute(sa.select(devices.c.group_id).where(devices.c.id == "dev-a")).scalar_one()
    scoped = Principal("sam", frozenset(Permission), frozenset({web}), username="sam")
    _events(engine, T0 - timedelta(hours=1), 1)
    _events(engine, T0 - timedelta(hours=1), 1, device="dev-b")
    d = svc.create_detection(store, repo, runner, FixedClock(T0), scoped, _fields())  # type: ignore[arg-type]
    [run] = svc.run_due(repo, runner, FixedClock(T0))
    assert run.rows == 2 and [a.machine_id for a in _custom_alerts(engine, d.rule_id)] == ["dev-a"]


def test_bad_rules_are_refused_by_field_and_only_with_the_permission(engine: sa.Engine) -> None:
    store, repo, runner = sql_store(engine), SqlDetections(engine), SqlHuntRunner(engine)
    clock = FixedClock(T0)
    analyst = Principal("tier1", frozenset({Permission.VIEW_DATA_SECOPS}), None, username="tier1")
    with pytest.raises(Forbidden):
        svc.create_detection(store, repo, runner, clock, analyst, _fields())  # type: ignore[arg-type]
    with pytest.raises(InvalidInput) as e:
        svc.create_detection(store, repo, runner, clock, ADMIN,
                             _fields(query_text="DELETE FROM DeviceProcessEvents"))  # type: ignore[arg-type]
    assert e.value.field == "queryCondition.queryText"
    svc.create_detection(store, repo, runner, clock, ADMIN, _fields())  # type: ignore[arg-type]
    with pytest.raises(InvalidInput) as dup:
        svc.create_detection(store, repo, runner, clock, ADMIN, _fields())  # type: ignore[arg-type]
    assert dup.value.field == "displayName"
    with store.begin() as uow:
        assert [r.action for r in uow.audit.entries("detection.create")] == ["detection.create"]


def test_a_rule_failing_its_runs_is_switched_off_with_an_alert_for_the_admins(engine: sa.Engine) -> None:
    store, repo, runner = sql_store(engine), SqlDetections(engine), SqlHuntRunner(engine)
    clock = FixedClock(T0)
    # Checks pass, but the results lack ReportId: every run fails, with the reason recorded.
    d = svc.create_detection(store, repo, runner, clock, ADMIN, _fields(
        query_text="DeviceProcessEvents | project Timestamp, DeviceId"))  # type: ignore[arg-type]
    _events(engine, T0 - timedelta(hours=1), 1)
    for i in range(MAX_FAILURES):
        clock.at = T0 + timedelta(hours=i)
        [run] = svc.run_due(repo, runner, clock)
        assert run.status == "failed" and "ReportId" in (run.error or "")
    off = repo.get(d.id)
    assert off is not None and not off.fields.enabled and off.consecutive_failures == MAX_FAILURES
    clock.at += timedelta(hours=5)
    assert svc.run_due(repo, runner, clock) == []
    [told] = _custom_alerts(engine, DISABLED_RULE_ID)
    assert told.machine_id is None and "netcat listener" in told.title
    # Switched on again (fixed), it counts afresh.
    fixed = replace(off.fields, enabled=True, query_text=QUERY)
    back = svc.update_detection(store, repo, runner, clock, ADMIN, d.id, fixed)
    assert back.fields.enabled and back.consecutive_failures == 0


def test_automatic_actions_need_their_permissions_and_a_refused_one_is_recorded(engine: sa.Engine) -> None:
    store, repo, runner = sql_store(engine), SqlDetections(engine), SqlHuntRunner(engine)
    clock = FixedClock(T0)
    # Manage security settings alone may not make a rule isolate devices: isolating by hand needs remediation.
    settings_only = Principal("sec", frozenset({Permission.MANAGE_SECURITY_SETTINGS, Permission.VIEW_DATA_SECOPS}),
                              None, username="sec")
    with pytest.raises(Forbidden) as no:
        svc.create_detection(store, repo, runner, clock, settings_only, _fields(
            response_actions=["isolateDevice"]))  # type: ignore[arg-type]
    assert no.value.permission is Permission.REMEDIATION_SECOPS
    with pytest.raises(ValueError, match=r"responseActions\[0\]: addIndicator: not run automatically"):
        _fields(response_actions=["addIndicator"])
    graph = _fields(response_actions=["#microsoft.graph.security.isolateDeviceResponseAction"])
    assert graph.response_actions == ("isolateDevice",)  # type: ignore[attr-defined]

    d = svc.create_detection(store, repo, runner, clock, ADMIN, graph)  # type: ignore[arg-type]
    assert repo.get(d.id).fields.response_actions == ("isolateDevice",)  # type: ignore[union-attr]
    _events(engine, T0 - timedelta(hours=1), 1)
    _events(engine, T0 - timedelta(hours=1), 1, device="dev-b")
    # This store has no signing key: each device's isolation is refused, said per device and audited.
    [run] = svc.run_due(repo, runner, clock, store)
    assert run.new_hits == 4
    assert [(a.action, a.device_id, a.machine_action_id) for a in run.actions] == [
        ("isolateDevice", "dev-a", None), ("isolateDevice", "dev-b", None)]
    assert all(a.error for a in run.actions)
    with store.begin() as uow:
        [failed] = uow.audit.entries("detection.action_failed")
    assert failed.actor == f"detection:{d.id}" and len(failed.after["failed"]) == 2
