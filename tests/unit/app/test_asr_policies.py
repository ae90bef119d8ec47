"""ASR policies per device group on the in-memory store: parsing, scope, audit, and the bundle each device gets."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from vigil.app import asr, indicators
from vigil.app.errors import Forbidden, InvalidInput, NotFound
from vigil.app.memory import MemoryState, MemoryStore
from vigil.app.ports import DeviceRecord
from vigil.app.principal import Principal
from vigil.asr import AsrMode, bundle, find
from vigil.core.actions import ActionType
from vigil.core.clock import FixedClock
from vigil.core.devices import DEFAULT_GROUP_NAME
from vigil.core.rbac import Permission

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
CLOCK = FixedClock(NOW)
A, B = "a" * 40, "b" * 40
TMP = find("ExecFromTempOrRemovable").guid



@pytest.fixture
def store() -> MemoryStore:
    s = MemoryState(groups={DEFAULT_GROUP_NAME: 1, "Pilot": 2})
    for dev, group in ((A, 1), (B, 2)):
        s.devices[dev] = DeviceRecord(dev, dev[:5], "Linux", "6.1", None, "1.0", group, "g", NOW, NOW)
    return MemoryStore(s)


def who(groups: frozenset[int] | None = None, manage: bool = True) -> Principal:
    perms = {Permission.VIEW_DATA_SECOPS} | ({Permission.MANAGE_SECURITY_SETTINGS} if manage else set())
    return Principal("ana", frozenset(perms), groups, username="ana")


def _bundles(store: MemoryStore) -> dict[str, bundle.Bundle]:
    out = {}
    for a in store.state.actions:
        assert a.type is ActionType.APPLY_PROTECTION_POLICY
        out[a.device_id] = bundle.from_json(a.parameters)
    return out


def test_a_group_policy_reaches_only_that_groups_devices_and_the_default_reaches_all(store: MemoryStore) -> None:
    body = {"modes": {"ExecFromTempOrRemovable": "Block"}, "exclusions": [{"pattern": "/opt/build/*"}]}
    view = asr.set_policy(store, CLOCK, who(), "Pilot", asr.parse_policy(body))
    assert (view.group_id, view.record and view.record.version, view.devices_updated) == (2, 1, 1)
    got = _bundles(store)
    assert list(got) == [B] and got[B].policies.mode(TMP, 2) is AsrMode.BLOCK
    asr.set_policy(store, CLOCK, who(), None, asr.parse_policy({"modes": {TMP: 2}}))
    got = _bundles(store)
    assert got[A].policies.mode(TMP, 1) is AsrMode.AUDIT and got[B].policies.mode(TMP, 2) is AsrMode.BLOCK
    audit = [e for e in store.state.audit if e.action == "asr.policy.update"]
    assert [(e.target_id, e.after["devicesUpdated"]) for e in audit] == [("2", 1), ("default", 2)]
    assert [v.group_name for v in asr.policies(store, CLOCK, who())] == ["default", "Pilot"]
    switched = asr.set_mode(store, CLOCK, who(), "Pilot", TMP, AsrMode.WARN)
    assert switched.policy.modes[TMP] is AsrMode.WARN and switched.policy.exclusions  # the rest kept


def test_indicators_travel_in_the_bundle_of_the_groups_they_name(store: MemoryStore) -> None:
    indicators.submit(store, CLOCK, who(), {"indicatorValue": "198.51.100.7", "indicatorType": "IpAddress",
                                            "action": "Block", "title": "c2", "rbacGroupNames": ["Pilot"]})
    got = _bundles(store)
    assert list(got) == [B] and [i.indicator_value for i in got[B].indicators] == ["198.51.100.7"]


@pytest.mark.parametrize(("body", "field"), [
    ({"modes": {"NoSuchRule": "Block"}}, "modes"), ({"modes": {TMP: "Loud"}}, "modes"),
    ({"exclusions": [{"pattern": "x", "kind": "user"}]}, "exclusions"), ({"mode": {}}, "mode"),
])
def test_bad_policies_are_refused_by_field(body: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as e:
        asr.parse_policy(body)
    assert e.value.field == field


def test_permissions_and_scope(store: MemoryStore) -> None:
    with pytest.raises(Forbidden):
        asr.set_policy(store, CLOCK, who(manage=False), "Pilot", asr.parse_policy({}))
    with pytest.raises(Forbidden):
        asr.set_policy(store, CLOCK, who(frozenset({2})), None, asr.parse_policy({}))
    with pytest.raises(NotFound):
        asr.set_policy(store, CLOCK, who(frozenset({2})), DEFAULT_GROUP_NAME, asr.parse_policy({}))
    assert asr.set_policy(store, CLOCK, who(frozenset({2})), "Pilot", asr.parse_policy({})).devices_updated == 1
    assert store.state.actions[0].device_id == B


def test_switching_one_mode_needs_only_the_settings_permission(store: MemoryStore) -> None:
    manager = Principal("max", frozenset({Permission.MANAGE_SECURITY_SETTINGS}), None, username="max")
    assert asr.set_mode(store, CLOCK, manager, "Pilot", "ExecFromTempOrRemovable", AsrMode.AUDIT).policy.modes == {
        TMP: AsrMode.AUDIT}
    with pytest.raises(NotFound):
        asr.set_mode(store, CLOCK, manager, "Pilot", "NoSuchRule", AsrMode.AUDIT)
