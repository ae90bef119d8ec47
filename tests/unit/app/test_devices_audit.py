"""Device tags, the device timeline and the audit log's reads on the in-memory store: no server, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from vigil.app import audit, devices
from vigil.app.errors import Forbidden, InvalidInput, NotFound
from vigil.app.memory import MemoryState, MemoryStore
from vigil.app.ports import DeviceRecord
from vigil.app.principal import Principal
from vigil.core.clock import FixedClock
from vigil.core.devices import DEFAULT_GROUP_NAME
from vigil.core.rbac import Permission

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
WEB, LAB = "a" * 40, "b" * 40


@pytest.fixture
def store() -> MemoryStore:
    s = MemoryState(groups={DEFAULT_GROUP_NAME: 1, "Lab": 2})
    s.devices[WEB] = DeviceRecord(WEB, "web-1", "Linux", "6.1", None, "1.0", 1, DEFAULT_GROUP_NAME, NOW, NOW)
    s.devices[LAB] = DeviceRecord(LAB, "lab-1", "Linux", "6.1", None, "1.0", 2, "Lab", NOW, NOW)
    s.telemetry["DeviceProcessEvents"] = [
        {"DeviceId": WEB, "Timestamp": NOW - timedelta(days=d), "FileName": f"p{d}", "ActionType": "ProcessCreated"}
        for d in (1, 10, 40)
    ]
    s.telemetry["DeviceNetworkEvents"] = [{"DeviceId": WEB, "Timestamp": NOW - timedelta(hours=1), "RemoteIP": "x"},
                                          {"DeviceId": LAB, "Timestamp": NOW, "RemoteIP": "y"}]
    return MemoryStore(s)


def who(*perms: Permission, groups: frozenset[int] | None = None) -> Principal:
    return Principal("ana", frozenset(perms), groups, source_ip="192.0.2.7", username="ana")


def test_a_tag_is_added_once_audited_with_before_and_after_and_removed(store: MemoryStore) -> None:
    ana = who(Permission.ALERTS_INVESTIGATION)
    d = devices.set_tag(store, FixedClock(NOW), ana, WEB, "prod", add=True)
    assert d.record.tags == ("prod",)
    devices.set_tag(store, FixedClock(NOW), ana, WEB, "prod", add=True)  # already there: nothing changes
    devices.set_tag(store, FixedClock(NOW), ana, WEB, "prod", add=False)
    assert store.state.devices[WEB].tags == ()
    assert [(r.actor, r.action, r.before, r.after["tags"], r.source_ip) for r in store.state.audit] == [
        ("ana", "device.tags", {"tags": []}, ["prod"], "192.0.2.7"),
        ("ana", "device.tags", {"tags": ["prod"]}, [], "192.0.2.7"),
    ]


def test_tagging_needs_the_permission_a_visible_device_and_a_valid_tag(store: MemoryStore) -> None:
    with pytest.raises(Forbidden):
        devices.set_tag(store, FixedClock(NOW), who(Permission.VIEW_DATA_SECOPS), WEB, "prod", add=True)
    with pytest.raises(NotFound):
        devices.set_tag(store, FixedClock(NOW), who(Permission.ALERTS_INVESTIGATION, groups=frozenset({2})), WEB,
                        "prod", add=True)
    with pytest.raises(InvalidInput) as bad:
        devices.set_tag(store, FixedClock(NOW), who(Permission.ALERTS_INVESTIGATION), WEB, "x" * 500, add=True)
    assert bad.value.field == "Value"
    assert store.state.audit == [] and store.state.devices[WEB].tags == ()


def test_the_timeline_is_the_last_30_days_newest_first_within_the_callers_groups(store: MemoryStore) -> None:
    ana = who(Permission.VIEW_DATA_SECOPS)
    got = devices.timeline(store, FixedClock(NOW), ana, WEB)
    assert [(e["Table"], e.get("FileName") or e.get("RemoteIP")) for e in got] == [
        ("DeviceNetworkEvents", "x"), ("DeviceProcessEvents", "p1"), ("DeviceProcessEvents", "p10")]
    older = devices.timeline(store, FixedClock(NOW), ana, WEB, start=NOW - timedelta(days=60),
                             tables=["DeviceProcessEvents"], limit=2)
    assert [e["FileName"] for e in older] == ["p1", "p10"]
    with pytest.raises(NotFound):
        devices.timeline(store, FixedClock(NOW), who(Permission.VIEW_DATA_SECOPS, groups=frozenset({2})), WEB)
    with pytest.raises(InvalidInput) as bad:
        devices.timeline(store, FixedClock(NOW), ana, WEB, tables=["NoSuchTable"])
    assert bad.value.field == "table"
    with pytest.raises(Forbidden):
        devices.timeline(store, FixedClock(NOW), who(Permission.ALERTS_INVESTIGATION), WEB)


def test_the_audit_log_reads_newest_first_verifies_and_exports_for_administrators_only(store: MemoryStore) -> None:
    ana = who(Permission.ALERTS_INVESTIGATION)
    for tag in ("a", "b"):
        devices.set_tag(store, FixedClock(NOW), ana, WEB, tag, add=True)
    devices.offboard(store, FixedClock(NOW), who(Permission.MANAGE_SECURITY_SETTINGS), LAB, "gone")
    admin = who(Permission.MANAGE_PORTAL_SETTINGS)
    assert [e.entry.seq for e in audit.recent(store, admin)] == [3, 2, 1]
    assert [e.entry.target_id for e in audit.recent(store, admin, "device.offboard")] == [LAB]
    assert [e.entry.seq for e in audit.recent(store, admin, limit=1)] == [3]
    report = audit.verify(store, admin)
    assert (report.ok, report.checked) == (True, 3)
    exported = list(audit.export(store, admin))
    assert [e.entry.seq for e in exported] == [1, 2, 3] and exported[1].entry.prev_hash == exported[0].hash
    for read in (audit.recent, audit.verify, audit.export):
        with pytest.raises(Forbidden):
            read(store, ana)
