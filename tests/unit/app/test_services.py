"""The devices, actions and onboarding services on the in-memory store: no server, no database."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from vigil.app import actions, devices, onboarding
from vigil.app.errors import Forbidden, GateClosed, InvalidInput, NotFound
from vigil.app.memory import MemoryState, MemoryStore
from vigil.app.ports import DeviceRecord, PlanGate
from vigil.app.principal import Principal, local_cli
from vigil.core.clock import FixedClock
from vigil.core.devices import DEFAULT_GROUP_NAME
from vigil.core.plan import Ring
from vigil.core.rbac import Permission

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
PEM = "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n"
SERVER = onboarding.ServerIdentity("https://vigil.test:8443", PEM, "0" * 64, None)


def _device(i: str, group: int, name: str) -> DeviceRecord:
    return DeviceRecord(i, name, "Linux", "6.1", None, "1.0", group, {1: "Ungrouped", 2: "Lab"}[group], NOW, NOW)


@pytest.fixture
def store() -> MemoryStore:
    s = MemoryState(groups={DEFAULT_GROUP_NAME: 1, "Lab": 2})
    for d in (_device("a" * 40, 1, "web-1"), _device("b" * 40, 2, "lab-1")):
        s.devices[d.id] = d
    return MemoryStore(s)


def analyst(*perms: Permission, groups: frozenset[int] | None = None) -> Principal:
    return Principal("ana", frozenset({Permission.VIEW_DATA_SECOPS, *perms}), groups, username="ana")


def test_a_scoped_analyst_lists_only_their_groups(store: MemoryStore) -> None:
    seen = devices.list_devices(store, FixedClock(NOW), analyst(groups=frozenset({2})))
    assert [d.record.computer_dns_name for d in seen] == ["lab-1"]
    with pytest.raises(NotFound):
        devices.get_device(store, FixedClock(NOW), analyst(groups=frozenset({2})), "a" * 40)


def test_isolating_without_the_permission_is_refused_and_records_nothing(store: MemoryStore) -> None:
    with pytest.raises(Forbidden) as e:
        actions.isolate(store, FixedClock(NOW), analyst(), "a" * 40, "contain it")
    assert e.value.permission is Permission.REMEDIATION_SECOPS
    assert store.state.actions == [] and store.state.audit == []


def test_isolating_records_the_action_audited_as_the_caller(store: MemoryStore) -> None:
    a = actions.isolate(store, FixedClock(NOW), analyst(Permission.REMEDIATION_SECOPS), "a" * 40, "contain it")
    assert a.requestor == "ana" and a.parameters["IsolationType"] == "Full"
    assert [(r.actor, r.action, r.target_id) for r in store.state.audit] == [("ana", "machineaction.create", a.id)]


def test_isolating_needs_a_comment_and_a_visible_device(store: MemoryStore) -> None:
    who = analyst(Permission.REMEDIATION_SECOPS, groups=frozenset({1}))
    with pytest.raises(InvalidInput) as e:
        actions.isolate(store, FixedClock(NOW), who, "a" * 40, "  ")
    assert e.value.field == "Comment"
    with pytest.raises(NotFound):
        actions.isolate(store, FixedClock(NOW), who, "b" * 40, "contain it")


def _gated(store: MemoryStore) -> None:
    store.state.plan = PlanGate(3, False, ("ciso@example.org",), {Ring.EVALUATE: "Lab"})


def test_a_gated_ring_refuses_the_package_for_the_cli_too(store: MemoryStore) -> None:
    _gated(store)
    with pytest.raises(GateClosed) as e:
        onboarding.write_package(store, FixedClock(NOW), local_cli("op@host"), SERVER, onboarding.PackageRequest())
    assert e.value.field == "group" and "ciso@example.org" in e.value.message
    assert store.state.tokens == [] and store.state.audit == []


def test_the_evaluate_ring_is_open_and_an_admin_override_is_audited(store: MemoryStore) -> None:
    _gated(store)
    who = local_cli("op@host")
    pkg = onboarding.write_package(store, FixedClock(NOW), who, SERVER, onboarding.PackageRequest(group="Lab"))
    assert pkg.group == "Lab" and pkg.token.startswith("vge_")
    onboarding.write_package(store, FixedClock(NOW), who, SERVER, onboarding.PackageRequest(override_reason="lab ok"))
    assert [(r.actor, r.action) for r in store.state.audit] == [
        ("cli:op@host", "onboarding.package"), ("cli:op@host", "onboarding.gate_override"),
        ("cli:op@host", "onboarding.package")]


def test_a_non_admin_may_not_override_the_gate(store: MemoryStore) -> None:
    _gated(store)
    with pytest.raises(GateClosed) as e:
        onboarding.write_package(store, FixedClock(NOW), analyst(Permission.MANAGE_SECURITY_SETTINGS), SERVER,
                                 onboarding.PackageRequest(override_reason="please"))
    assert e.value.field == "override_reason"


def test_onboarding_checks_its_inputs_and_the_callers_groups(store: MemoryStore) -> None:
    who = analyst(Permission.MANAGE_SECURITY_SETTINGS, groups=frozenset({2}))
    with pytest.raises(InvalidInput):
        onboarding.write_package(store, FixedClock(NOW), who, SERVER, onboarding.PackageRequest("Lab", "1y"))
    with pytest.raises(NotFound):
        onboarding.write_package(store, FixedClock(NOW), who, SERVER, onboarding.PackageRequest(DEFAULT_GROUP_NAME))
    with pytest.raises(Forbidden):
        onboarding.write_package(store, FixedClock(NOW), analyst(), SERVER, onboarding.PackageRequest())


def test_offboarding_once_is_audited_once(store: MemoryStore) -> None:
    who = local_cli("op@host")
    first = devices.offboard(store, FixedClock(NOW), who, "a" * 40, "retired")
    again = devices.offboard(store, FixedClock(NOW), who, "a" * 40, "retired")
    assert (first.changed, again.changed) == (True, False)
    assert [(r.actor, r.action, r.reason) for r in store.state.audit] == [("cli:op@host", "device.offboard", "retired")]
    with pytest.raises(Forbidden):
        devices.offboard(store, FixedClock(NOW), analyst(), "b" * 40, None)


def test_the_cli_acting_as_a_user_has_that_users_rights_and_is_audited_as_the_operator(store: MemoryStore) -> None:
    from vigil.app.ports import UserAccess
    from vigil.app.users import acting_as

    store.state.users["alice"] = UserAccess("alice", frozenset({Permission.VIEW_DATA_SECOPS}), frozenset({2}))
    who = acting_as(store, local_cli("op@host"), "alice")
    assert (who.actor, who.is_admin, who.device_group_ids) == ("cli:op@host (as alice)", False, frozenset({2}))
    assert [d.record.computer_dns_name for d in devices.list_devices(store, FixedClock(NOW), who)] == ["lab-1"]
    with pytest.raises(Forbidden):
        actions.isolate(store, FixedClock(NOW), who, "b" * 40, "contain it")
    with pytest.raises(NotFound) as e:
        acting_as(store, local_cli("op@host"), "mallory")
    assert e.value.field == "as"
