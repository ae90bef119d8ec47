"""One contract for the store ports, run on SQLite, PostgreSQL and the in-memory fake."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from vigil.app.memory import MemoryStore
from vigil.app.ports import (
    AlertQuery,
    AlertRecord,
    AlertUpdate,
    AuditRecord,
    DeviceRecord,
    IncidentRecord,
    IncidentUpdate,
    NewSuppression,
    Store,
)
from vigil.core.devices import DEFAULT_GROUP_NAME
from vigil.core.groups import GroupRuleError
from vigil.core.incidents import incident_name
from vigil.core.suppression import SuppressionError
from vigil.store.errors import InvalidChange, NotFound

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def test_the_default_group_exists_and_an_unknown_one_raises(store: Store) -> None:
    with store.begin() as uow:
        assert uow.devices.group_id(None, NOW) == uow.devices.group_id(DEFAULT_GROUP_NAME, NOW)
        with pytest.raises(NotFound):
            uow.devices.group_id("no such group", NOW)


def test_a_token_is_issued_for_its_group_and_bad_values_are_refused(store: Store) -> None:
    with store.begin() as uow:
        t = uow.enrollment.issue(group=None, expires_at=NOW + timedelta(days=1), max_uses=2, created_by="x", now=NOW)
        assert (t.group, t.max_uses) == (DEFAULT_GROUP_NAME, 2) and t.token.startswith("vge_")
        with pytest.raises(ValueError):
            uow.enrollment.issue(group=None, expires_at=NOW, max_uses=1, created_by="x", now=NOW)


def test_audit_records_commit_with_the_unit_of_work_and_roll_back_with_it(store: Store) -> None:
    with store.begin() as uow:
        uow.audit.append(AuditRecord("cli:op@host", "device.offboard", "device", "d1", reason="why"), NOW)
    with pytest.raises(RuntimeError), store.begin() as uow:
        uow.audit.append(AuditRecord("ana", "device.offboard", "device", "d2"), NOW)
        raise RuntimeError("refused")
    with store.begin() as uow:
        got = [(r.actor, r.target_id, r.reason) for r in uow.audit.entries("device.offboard")]
    assert got == [("cli:op@host", "d1", "why")]


def test_no_plan_means_no_gate_and_unknown_devices_are_none(store: Store) -> None:
    with store.begin() as uow:
        assert uow.plan.gate() is None
        assert uow.devices.get("f" * 40) is None and uow.devices.find("f" * 40) == []
        assert list(uow.devices.in_groups(None)) == [] and uow.devices.offboard("f" * 40, NOW) is False


def test_an_unknown_user_has_no_access(store: Store) -> None:
    with store.begin() as uow:
        assert uow.users.access("nobody-by-this-name") is None


def _seed(store: Store, hostname: str, group: str | None, title: str, at: datetime) -> tuple[int, str]:
    """A device in ``group`` (made if missing) with one new alert raised at ``at``: (group id, alert id)."""
    if isinstance(store, MemoryStore):
        st = store.state
        gid = st.groups.setdefault(group or DEFAULT_GROUP_NAME, len(st.groups) + 1)
        dev = DeviceRecord(f"{hostname:0<40}"[:40], hostname, "Linux", "6.1", None, "1.0", gid,
                           group or DEFAULT_GROUP_NAME, at, at)
        st.devices[dev.id] = dev
        alert = AlertRecord(f"va{len(st.alerts):032x}", dev.id, None, title, "", "High", "Execution", "New", None,
                            None, "Unknown", "CustomDetection", "rule-1", ("T1059",), None, at, at, at, at, None,
                            1, ({"FileName": "sh"},))
        iid = max(st.incidents, default=0) + 1  # a new alert on its own device opens its own incident
        st.alerts[alert.id] = replace(alert, incident_id=iid)
        st.incidents[iid] = IncidentRecord(iid, incident_name(["Execution"], [hostname], ["CustomDetection"]),
                                           "Active", "High", None, None, None, at, at, at, (dev.id,), ())
        return gid, alert.id
    from vigil.store import devices as device_store
    from vigil.store.alerts import NewHit, record_hit

    with store.engine.begin() as conn:  # type: ignore[attr-defined]
        device_store.ensure_default_group(conn, at)
        try:
            gid = device_store.group_id_by_name(conn, group, at)
        except NotFound:
            gid = device_store.create_group(conn, group or "", at)
        tok = device_store.issue_token(conn, group=group, expires_at=at + timedelta(days=1), max_uses=1,
                                       created_by="t", now=at)
        dev_id, _ = device_store.register_device(conn, token_id=tok.token_id, group_id=gid, hostname=hostname,
                                              os_platform="Linux", os_version="6.1", agent_version="1.0",
                                              machine_id=hostname, ip=None, now=at)
        alert_id, _ = record_hit(conn, NewHit(dev_id, "rule-1", title, "", "High", "Execution", "CustomDetection",
                                              ["T1059"], at, {"FileName": "sh"}), at)
    return gid, alert_id


def test_alerts_are_listed_newest_first_within_the_groups_asked_for(store: Store) -> None:
    lab, older = _seed(store, "lab-1", "Lab", "Reverse shell", NOW - timedelta(hours=2))
    default, newer = _seed(store, "web-1", None, "Miner", NOW - timedelta(hours=1))
    with store.begin() as uow:
        assert [a.id for a in uow.alerts.query(AlertQuery(), None)] == [newer, older]
        assert [a.id for a in uow.alerts.query(AlertQuery(), frozenset({lab}))] == [older]
        assert uow.alerts.query(AlertQuery(), frozenset()) == []
        assert [a.id for a in uow.alerts.query(AlertQuery(since=NOW - timedelta(minutes=90)), None)] == [newer]
        assert [a.id for a in uow.alerts.query(AlertQuery(limit=1), None)] == [newer]
        assert uow.alerts.query(AlertQuery(status="Resolved"), None) == []
        got = uow.alerts.get(older, None)
        assert got is not None and (got.title, got.status, got.mitre_techniques) == ("Reverse shell", "New", ("T1059",))
        assert got.evidence == ({"FileName": "sh"},) and got.alert_creation_time == NOW - timedelta(hours=2)
        assert uow.alerts.get(older, frozenset({default})) is None and uow.alerts.get("va" + "0" * 30, None) is None


def test_an_alert_update_notes_each_changed_property_and_the_comment(store: Store) -> None:
    _, alert_id = _seed(store, "web-1", None, "Miner", NOW - timedelta(hours=1))
    with store.begin() as uow:
        change = AlertUpdate(status="Resolved", classification="TruePositive", assigned_to=None, comment="done")
        assert uow.alerts.update(alert_id, change, "ana", NOW) is True
        assert uow.alerts.update("va" + "0" * 30, change, "ana", NOW) is False
    with store.begin() as uow:
        a = uow.alerts.get(alert_id, None)
        assert a is not None and (a.status, a.classification, a.resolved_time, a.last_update_time) == (
            "Resolved", "TruePositive", NOW, NOW)
        notes = [(n.kind, n.author, n.text) for n in uow.alerts.notes(alert_id)]
    assert notes == [("History", "ana", "status: New → Resolved"),
                     ("History", "ana", "classification: — → TruePositive"), ("Comment", "ana", "done")]


def _incident_of(store: Store, alert_id: str) -> int:
    with store.begin() as uow:
        a = uow.alerts.get(alert_id, None)
    assert a is not None and a.incident_id is not None
    return a.incident_id


def test_incidents_are_scoped_by_their_alerts_merged_and_split(store: Store) -> None:
    lab, a = _seed(store, "lab-1", "Lab", "Reverse shell", NOW - timedelta(hours=2))
    _, b = _seed(store, "web-1", None, "Miner", NOW - timedelta(hours=1))
    ia, ib = _incident_of(store, a), _incident_of(store, b)
    assert ia != ib
    with store.begin() as uow:
        assert [i.id for i in uow.incidents.listing(None, None)] == [ib, ia]  # newest activity first
        assert [i.id for i in uow.incidents.listing(None, frozenset({lab}))] == [ia]
        assert uow.incidents.get(ib, frozenset({lab})) is None and uow.incidents.get(10_000, None) is None
        first = uow.incidents.get(ia, None)
        assert first is not None and (first.status, first.severity, first.name) == (
            "Active", "High", incident_name(["Execution"], ["lab-1"], ["CustomDetection"]))
        uow.incidents.update(ia, IncidentUpdate(assigned_to="ana", classification="TruePositive"), NOW)
    with store.begin() as uow:
        for bad in ([ia], [], [10_000]):
            with pytest.raises(InvalidChange):
                uow.incidents.merge(ia, bad, NOW)
        uow.incidents.merge(ia, [ib], NOW)
    with store.begin() as uow:
        merged, gone = uow.incidents.get(ia, None), uow.incidents.get(ib, None)
        assert merged is not None and gone is not None
        assert (merged.assigned_to, merged.classification, len(merged.device_ids)) == ("ana", "TruePositive", 2)
        assert (gone.status, gone.redirect_incident_id) == ("Redirected", ia)
        assert [i.id for i in uow.incidents.listing(None, None)] == [ia]
        assert uow.incidents.get(ia, frozenset({lab})) is not None  # it still has an alert on a Lab device
        with pytest.raises(InvalidChange, match="at least one alert"):
            uow.incidents.split(ia, [a, b], NOW)
        with pytest.raises(InvalidChange, match="not in incident"):
            uow.incidents.split(ib, [a], NOW)
        new = uow.incidents.split(ia, [b], NOW)
        alert_b = uow.alerts.get(b, None)
        assert alert_b is not None and alert_b.incident_id == new
    with store.begin() as uow:
        left, out = uow.incidents.get(ia, None), uow.incidents.get(new, None)
        assert left is not None and out is not None
        assert len(left.device_ids) == 1 and out.device_ids == (alert_b.machine_id,) and out.status == "Active"


def test_suppression_rules_are_stored_switched_and_deleted(store: Store) -> None:
    rule = NewSuppression("Miner", "Device", "Resolve", {"FileName": "xmrig"}, "d" * 40, "lab noise", "ana")
    with store.begin() as uow:
        first = uow.suppression.create(rule, NOW)
        second = uow.suppression.create(NewSuppression("Other", "Organization", "Hide", {}, None, "x", "ben"), NOW)
        with pytest.raises(SuppressionError):
            uow.suppression.create(NewSuppression("Bad", "Organization", "Hide", {"Colour": "red"}, None, "x", "b"),
                                   NOW)
    with store.begin() as uow:
        got = uow.suppression.listing()
        assert [r.id for r in got] == [first, second]
        r = got[0]
        assert (r.alert_title, r.scope, r.action, r.conditions, r.machine_id, r.enabled, r.created_by, r.hits) == (
            "Miner", "Device", "Resolve", {"FileName": "xmrig"}, "d" * 40, True, "ana", 0)
        assert r.created_at == NOW
        assert uow.suppression.set_enabled(first, False) is True and uow.suppression.set_enabled(10_000, True) is False
        assert uow.suppression.delete(second) is True and uow.suppression.delete(second) is False
    with store.begin() as uow:
        assert [(r.id, r.enabled) for r in uow.suppression.listing()] == [(first, False)]


def _device_id(store: Store, hostname: str) -> str:
    with store.begin() as uow:
        return next(d.id for d in uow.devices.in_groups(None) if d.computer_dns_name == hostname)


def test_tags_are_set_once_and_removed_and_a_bad_tag_or_device_is_refused(store: Store) -> None:
    _seed(store, "web-1", None, "Miner", NOW)
    dev = _device_id(store, "web-1")
    with store.begin() as uow:
        first = uow.devices.set_tags(dev, ["prod", "prod"], [], NOW)
        assert (first.before, first.after, first.group_moves) == ((), ("prod",), ())
        assert uow.devices.set_tags(dev, ["prod"], [], NOW).after == ("prod",)
    with store.begin() as uow:
        d = uow.devices.get(dev)
        assert d is not None and d.tags == ("prod",) and d.last_seen == NOW
        assert uow.devices.set_tags(dev, [], ["prod"], NOW + timedelta(hours=1)).after == ()
        with pytest.raises(GroupRuleError):
            uow.devices.set_tags(dev, ["x" * 500], [], NOW)
        with pytest.raises(NotFound):
            uow.devices.set_tags("f" * 40, ["prod"], [], NOW)
    with store.begin() as uow:
        d = uow.devices.get(dev)
        assert d is not None and d.tags == () and d.last_seen == NOW  # a tag is not a sign of life


def _events(store: Store, dev: str, other: str) -> None:
    rows = {
        "DeviceProcessEvents": [{"DeviceId": dev, "Timestamp": NOW - timedelta(hours=h), "FileName": f"p{h}",
                                 "ActionType": "ProcessCreated"} for h in (1, 3)]
        + [{"DeviceId": other, "Timestamp": NOW, "FileName": "theirs", "ActionType": "ProcessCreated"}],
        "DeviceNetworkEvents": [{"DeviceId": dev, "Timestamp": NOW - timedelta(hours=2), "RemoteIP": "192.0.2.1",
                                 "ActionType": "ConnectionSuccess"}],
    }
    report = iter(range(1, 100))
    rows = {t: [{**r, "DeviceName": "web", "ReportId": next(report)} for r in batch] for t, batch in rows.items()}
    if isinstance(store, MemoryStore):
        for table, batch in rows.items():
            store.state.telemetry.setdefault(table, []).extend(batch)
        return
    from vigil.store.telemetry import insert_rows

    with store.engine.begin() as conn:  # type: ignore[attr-defined]
        for table, batch in rows.items():
            insert_rows(conn, table, batch)


def test_the_timeline_merges_tables_newest_first_for_one_device(store: Store) -> None:
    _seed(store, "web-1", None, "Miner", NOW)
    _seed(store, "web-2", None, "Miner", NOW)
    dev, other = _device_id(store, "web-1"), _device_id(store, "web-2")
    _events(store, dev, other)
    with store.begin() as uow:
        got = uow.telemetry.timeline(dev, None, None, None, 10)
        assert [(e["Table"], e.get("FileName") or e.get("RemoteIP")) for e in got] == [
            ("DeviceProcessEvents", "p1"), ("DeviceNetworkEvents", "192.0.2.1"), ("DeviceProcessEvents", "p3")]
        assert got[0]["Timestamp"] == NOW - timedelta(hours=1) and "SHA256" not in got[0]  # nulls left out
        assert [e["FileName"] for e in uow.telemetry.timeline(dev, None, None, ["DeviceProcessEvents"], 10)] == [
            "p1", "p3"]
        window = uow.telemetry.timeline(dev, NOW - timedelta(hours=2), NOW - timedelta(hours=1), None, 10)
        assert [e["Table"] for e in window] == ["DeviceNetworkEvents"]  # start inclusive, end exclusive
        assert len(uow.telemetry.timeline(dev, None, None, None, 1)) == 1
        assert uow.telemetry.timeline("f" * 40, None, None, None, 10) == []


def test_the_audit_log_reads_back_hash_chained_newest_first_and_verifies(store: Store) -> None:
    with store.begin() as uow:
        for i in range(3):
            uow.audit.append(AuditRecord("ana", "device.tags" if i < 2 else "device.offboard", "device", f"d{i}",
                                         after={"tags": [str(i)]}, source_ip="192.0.2.7"), NOW + timedelta(minutes=i))
    with store.begin() as uow:
        log = uow.audit.log()
        assert [(e.entry.seq, e.entry.target_id) for e in log] == [(3, "d2"), (2, "d1"), (1, "d0")]
        assert log[0].entry.at == NOW + timedelta(minutes=2) and log[0].entry.after == {"tags": ["2"]}
        assert [e.entry.seq for e in uow.audit.log("device.tags", limit=1)] == [2]
        chain = list(uow.audit.chain())
        assert [e.entry.seq for e in chain] == [1, 2, 3]
        assert all(b.entry.prev_hash == a.hash for a, b in itertools.pairwise(chain))
        assert {e.hash for e in chain} == {e.hash for e in log}
        report = uow.audit.verify()
        assert (report.ok, report.checked) == (True, 3)
