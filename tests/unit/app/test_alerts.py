"""The alerts service on the in-memory store: the permission, the device-group scope, validation and the audit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from vigil.app import alerts
from vigil.app.errors import Forbidden, InvalidInput, NotFound
from vigil.app.memory import MemoryState, MemoryStore
from vigil.app.ports import AlertRecord, AlertUpdate, DeviceRecord
from vigil.app.principal import Principal
from vigil.core.clock import FixedClock
from vigil.core.devices import DEFAULT_GROUP_NAME
from vigil.core.rbac import Permission

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
CLOCK = FixedClock(NOW)


def _alert(i: str, device: str, age: timedelta) -> AlertRecord:
    at = NOW - age
    return AlertRecord(i, device, None, f"alert {i}", "", "High", "Execution", "New", None, None, "Unknown",
                       "CustomDetection", "r1", (), None, at, at, at, at, None, 1, ())


@pytest.fixture
def store() -> MemoryStore:
    s = MemoryState(groups={DEFAULT_GROUP_NAME: 1, "Lab": 2})
    for dev, group in (("a" * 40, 1), ("b" * 40, 2)):
        s.devices[dev] = DeviceRecord(dev, dev[:5], "Linux", "6.1", None, "1.0", group, "g", NOW, NOW)
    for a in (_alert("va1", "a" * 40, timedelta(hours=1)), _alert("va2", "b" * 40, timedelta(hours=2)),
              _alert("va-old", "a" * 40, timedelta(days=31))):
        s.alerts[a.id] = a
    return MemoryStore(s)


def who(*perms: Permission, groups: frozenset[int] | None = None) -> Principal:
    return Principal("ana (API token 7)", frozenset({Permission.VIEW_DATA_SECOPS, *perms}), groups, username="ana")


def test_the_queue_is_the_last_30_days_of_the_callers_groups_newest_first(store: MemoryStore) -> None:
    assert [a.id for a in alerts.list_alerts(store, CLOCK, who())] == ["va1", "va2"]
    assert [a.id for a in alerts.list_alerts(store, CLOCK, who(groups=frozenset({2})))] == ["va2"]
    with pytest.raises(NotFound):
        alerts.get_alert(store, CLOCK, who(groups=frozenset({2})), "va1")
    with pytest.raises(InvalidInput) as e:
        alerts.list_alerts(store, CLOCK, who(), status="Closed")
    assert e.value.field == "status"
    with pytest.raises(Forbidden):
        alerts.list_alerts(store, CLOCK, Principal("x", frozenset()))


def test_an_update_needs_alerts_investigation_and_leaves_nothing_when_refused(store: MemoryStore) -> None:
    with pytest.raises(Forbidden) as e:
        alerts.update_alert(store, CLOCK, who(), "va1", AlertUpdate(status="Resolved"))
    assert e.value.permission is Permission.ALERTS_INVESTIGATION
    with pytest.raises(NotFound):
        alerts.update_alert(store, CLOCK, who(Permission.ALERTS_INVESTIGATION, groups=frozenset({2})), "va1",
                            AlertUpdate(status="Resolved"))
    with pytest.raises(InvalidInput) as bad:
        alerts.update_alert(store, CLOCK, who(Permission.ALERTS_INVESTIGATION), "va1",
                            AlertUpdate(determination="Aliens"))
    assert bad.value.field == "determination"
    assert store.state.alerts["va1"].status == "New" and store.state.audit == [] and store.state.alert_notes == {}


def test_an_update_is_noted_in_the_history_and_audited_once_as_the_caller(store: MemoryStore) -> None:
    got = alerts.update_alert(store, CLOCK, who(Permission.ALERTS_INVESTIGATION), "va1",
                              AlertUpdate(status="Resolved", assigned_to="ana", comment="benign admin script"))
    assert (got.record.status, got.record.assigned_to, got.record.resolved_time) == ("Resolved", "ana", NOW)
    assert [(n.kind, n.author) for n in got.notes] == [("History", "ana")] * 2 + [("Comment", "ana")]
    [rec] = store.state.audit
    assert (rec.actor, rec.action, rec.target_id, rec.reason) == ("ana (API token 7)", "alert.update", "va1",
                                                                  "benign admin script")
    assert rec.before == {"status": "New", "assigned_to": None}
    assert rec.after == {"status": "Resolved", "assigned_to": "ana"}
    # The same values again change nothing, so nothing is noted or audited.
    again = alerts.update_alert(store, CLOCK, who(Permission.ALERTS_INVESTIGATION), "va1",
                                AlertUpdate(status="Resolved"))
    assert len(again.notes) == 3 and len(store.state.audit) == 1
