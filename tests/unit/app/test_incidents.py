"""The incidents service on the in-memory store: partial views across device groups, refusals, audit records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from vigil.app import incidents
from vigil.app.errors import Forbidden, InvalidInput, NotFound
from vigil.app.memory import MemoryState, MemoryStore
from vigil.app.ports import AlertRecord, DeviceRecord, IncidentRecord, IncidentUpdate
from vigil.app.principal import Principal
from vigil.core.clock import FixedClock
from vigil.core.devices import DEFAULT_GROUP_NAME
from vigil.core.rbac import Permission

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
CLOCK = FixedClock(NOW)
A, B = "a" * 40, "b" * 40  # group 1, group 2


def _alert(i: str, device: str, incident: int, sha: str) -> AlertRecord:
    at = NOW - timedelta(hours=1)
    return AlertRecord(i, device, incident, f"alert {i}", "", "High", "Execution", "New", None, None, "Unknown",
                       "CustomDetection", "r1", (), None, at, at, at, at, None, 1, ({"SHA256": sha},))


@pytest.fixture
def store() -> MemoryStore:
    s = MemoryState(groups={DEFAULT_GROUP_NAME: 1, "Lab": 2})
    for dev, group in ((A, 1), (B, 2)):
        s.devices[dev] = DeviceRecord(dev, f"host-{dev[0]}", "Linux", "6.1", None, "1.0", group, "g", NOW, NOW)
    for a in (_alert("va1", A, 1, "1" * 64), _alert("va2", B, 1, "2" * 64), _alert("va3", B, 2, "3" * 64)):
        s.alerts[a.id] = a
    at = NOW - timedelta(hours=1)
    s.incidents[1] = IncidentRecord(1, "Multi-stage", "Active", "High", None, None, None, at, at, at, (A, B),
                                    (("FileHash", "1" * 64), ("FileHash", "2" * 64)))
    s.incidents[2] = IncidentRecord(2, "Execution", "Active", "High", None, None, None, at, at, at, (B,),
                                    (("FileHash", "3" * 64),))
    return MemoryStore(s)


def who(*perms: Permission, groups: frozenset[int] | None = None) -> Principal:
    return Principal("ana", frozenset({Permission.VIEW_DATA_SECOPS, *perms}), groups, username="ana")


def test_a_scoped_analyst_sees_only_their_part_of_an_incident(store: MemoryStore) -> None:
    mine = incidents.list_incidents(store, CLOCK, who(groups=frozenset({1})))
    assert [(i.record.id, i.machine_ids, i.entities) for i in mine] == [(1, (A,), (("FileHash", "1" * 64),))]
    one = incidents.get_incident(store, CLOCK, who(groups=frozenset({1})), 1)
    assert [a.id for a in one.alerts or ()] == ["va1"]
    with pytest.raises(NotFound):
        incidents.get_incident(store, CLOCK, who(groups=frozenset({1})), 2)
    everything = incidents.get_incident(store, CLOCK, who(), 1)
    assert everything.machine_ids == (A, B) and {a.id for a in everything.alerts or ()} == {"va1", "va2"}


def test_changes_need_alerts_investigation_and_redirecting_by_hand_is_refused(store: MemoryStore) -> None:
    with pytest.raises(Forbidden):
        incidents.update_incident(store, CLOCK, who(), 1, IncidentUpdate(status="Resolved"))
    with pytest.raises(InvalidInput, match="merge incidents"):
        incidents.update_incident(store, CLOCK, who(Permission.ALERTS_INVESTIGATION), 1,
                                  IncidentUpdate(status="Redirected"))
    with pytest.raises(NotFound):  # the other incident is not one the caller may see
        incidents.merge_incidents(store, CLOCK, who(Permission.ALERTS_INVESTIGATION, groups=frozenset({1})), 1, [2])
    with pytest.raises(InvalidInput) as e:  # an alert on a device the caller may not see stays where it is
        incidents.split_incident(store, CLOCK, who(Permission.ALERTS_INVESTIGATION, groups=frozenset({1})), 1,
                                 ["va2"])
    assert e.value.field == "alertIds"
    assert store.state.audit == [] and store.state.incidents[2].status == "Active"


def test_update_merge_and_split_are_audited_as_the_caller(store: MemoryStore) -> None:
    analyst = who(Permission.ALERTS_INVESTIGATION)
    got = incidents.update_incident(store, CLOCK, analyst, 1, IncidentUpdate(assigned_to="ana"))
    assert got.record.assigned_to == "ana"
    merged = incidents.merge_incidents(store, CLOCK, analyst, 1, [2])
    assert {a.id for a in merged.alerts or ()} == {"va1", "va2", "va3"}
    assert store.state.incidents[2].redirect_incident_id == 1
    new = incidents.split_incident(store, CLOCK, analyst, 1, ["va3"])
    assert [a.id for a in new.alerts or ()] == ["va3"] and new.machine_ids == (B,)
    assert [(r.actor, r.action, r.target_id) for r in store.state.audit] == [
        ("ana", "incident.update", "1"), ("ana", "incident.merge", "1"), ("ana", "incident.split", "1")]
    assert store.state.audit[0].before == {"assigned_to": None} and store.state.audit[2].after["newIncidentId"] == 3
