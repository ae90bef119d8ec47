"""The suppression service on the in-memory store: Device-scoped rules follow their device's group; audited."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from vigil.app import suppression
from vigil.app.errors import Forbidden, InvalidInput, NotFound
from vigil.app.memory import MemoryState, MemoryStore
from vigil.app.ports import DeviceRecord
from vigil.app.principal import Principal
from vigil.core.clock import FixedClock
from vigil.core.devices import DEFAULT_GROUP_NAME
from vigil.core.rbac import Permission

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
CLOCK = FixedClock(NOW)
A, B = "a" * 40, "b" * 40


@pytest.fixture
def store() -> MemoryStore:
    s = MemoryState(groups={DEFAULT_GROUP_NAME: 1, "Lab": 2})
    for dev, group in ((A, 1), (B, 2)):
        s.devices[dev] = DeviceRecord(dev, dev[:5], "Linux", "6.1", None, "1.0", group, "g", NOW, NOW)
    return MemoryStore(s)


def who(groups: frozenset[int] | None = None, manage: bool = True) -> Principal:
    perms = {Permission.VIEW_DATA_SECOPS} | ({Permission.MANAGE_SECURITY_SETTINGS} if manage else set())
    return Principal("ana", frozenset(perms), groups, username="ana")


def _make(store: MemoryStore, caller: Principal, machine: str | None, **kw: object) -> int:
    args: dict[str, object] = {"alert_title": "Miner", "scope": "Device" if machine else "Organization",
                               "action": "Hide", "conditions": {}, "machine_id": machine, "comment": "lab noise"}
    args.update(kw)
    return suppression.create_rule(store, CLOCK, caller, **args).id  # type: ignore[arg-type]


def test_device_rules_are_seen_and_changed_only_by_callers_who_see_the_device(store: MemoryStore) -> None:
    org, on_b = _make(store, who(), None), _make(store, who(), B)
    assert [r.id for r in suppression.list_rules(store, who(frozenset({1})))] == [org]
    assert [r.id for r in suppression.list_rules(store, who(frozenset({2})))] == [org, on_b]
    with pytest.raises(NotFound):
        suppression.set_enabled(store, CLOCK, who(frozenset({1})), on_b, False)
    with pytest.raises(NotFound) as e:
        _make(store, who(frozenset({1})), B)
    assert e.value.field == "machineId"
    with pytest.raises(Forbidden):
        suppression.delete_rule(store, CLOCK, who(manage=False), org)


def test_bad_rules_are_refused_with_the_field_named(store: MemoryStore) -> None:
    with pytest.raises(InvalidInput) as e:
        _make(store, who(), None, scope="Device")
    assert e.value.field == "machineId"
    with pytest.raises(InvalidInput) as bad:
        _make(store, who(), None, conditions={"Colour": "red"})
    assert bad.value.field is not None and store.state.suppression == {} and store.state.audit == []


def test_each_change_is_audited_once_as_the_caller(store: MemoryStore) -> None:
    rule = _make(store, who(), A)
    assert suppression.set_enabled(store, CLOCK, who(), rule, False).enabled is False
    suppression.set_enabled(store, CLOCK, who(), rule, False)  # no change, no record
    suppression.delete_rule(store, CLOCK, who(), rule)
    assert store.state.suppression == {}
    assert [(r.actor, r.action, r.target_id) for r in store.state.audit] == [
        ("ana", "suppression.create", str(rule)), ("ana", "suppression.disable", str(rule)),
        ("ana", "suppression.delete", str(rule))]
