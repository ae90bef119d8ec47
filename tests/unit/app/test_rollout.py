"""vigil.app.rollout on the in-memory store: the plan's gates, the push per ring group, the outcome and its audit."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from tests.unit.core.test_plan import complete
from vigil.app import rollout
from vigil.app.errors import Forbidden, GateClosed, Refused
from vigil.app.memory import MemoryState, MemoryStore
from vigil.app.ports import DeviceRecord, RolloutPlan
from vigil.app.principal import Principal, local_cli
from vigil.core.actions import ActionType
from vigil.core.clock import FixedClock
from vigil.core.devices import DEFAULT_GROUP_NAME
from vigil.core.plan import COMPONENTS, Component, Ring, plan_from_dict
from vigil.core.rbac import Permission

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
CLOCK = FixedClock(NOW)
GROUPS = {Ring.EVALUATE: "Ring – Evaluate", Ring.PILOT: "Ring – Pilot", Ring.FULL: "Ring – Full"}


def world(*components: str, signed_off: bool = True, groups: dict[Ring, str] | None = None) -> MemoryStore:
    d = complete()
    d["adoption"] = [a for a in d["adoption"] if a["component"] in (*components, "EDR")]
    s = MemoryState(groups={DEFAULT_GROUP_NAME: 1, "Ring – Evaluate": 2, "Ring – Pilot": 3, "Ring – Full": 4})
    for n, gid in (("e1", 2), ("p1", 3)):
        s.devices[n * 20] = DeviceRecord(n * 20, n, "Linux", "6.1", None, "1.0", gid, "g", NOW, NOW)
    s.rollout = RolloutPlan(3, plan_from_dict(d), signed_off, Ring.EVALUATE, {}, groups or GROUPS)
    return MemoryStore(s)


def test_each_step_pushes_to_the_rings_group_only_and_is_audited() -> None:
    store = world("NGP")
    done = rollout.enable_next(store, CLOCK, local_cli("ops@host"), Ring.EVALUATE)
    assert (done.step.component, done.state.value, done.plan_version) == (Component.NGP, "audit", 3)
    assert [(g.group, g.outcome, g.detail, g.devices_updated) for g in done.groups] == [
        ("Ring – Evaluate", "applied", "antivirus mode passive", 1)]
    [sent] = store.state.actions
    assert (sent.device_id, sent.type) == ("e1" * 20, ActionType.APPLY_PROTECTION_POLICY)
    assert sent.parameters["Antivirus"]["mode"] == "passive"
    assert store.state.rollout is not None and store.state.rollout.stored == {"Evaluate": {"NGP": "audit"}}
    assert store.state.rollout_results["Evaluate"]["NGP"]["groups"][0]["outcome"] == "applied"
    entry = next(a for a in store.state.audit if a.action == "plan.component_enable")
    assert entry.actor == "cli:ops@host" and entry.after is not None and entry.after["state"] == "audit"


def test_the_previous_rings_criteria_gate_a_step_unless_an_administrator_gives_a_reason() -> None:
    store = world("NGP")
    store.state.unmet = {Ring.EVALUATE: ("Devices reporting (0 of 1, target every device, within 24 h)",)}
    rollout.enable_next(store, CLOCK, local_cli(), Ring.EVALUATE)
    with pytest.raises(Refused, match="NGP waits for the Evaluate ring's exit criteria: Devices reporting") as e:
        rollout.enable_next(store, CLOCK, local_cli(), Ring.PILOT)
    assert e.value.field == "override_reason"
    operator = Principal("op", frozenset(Permission), None)
    with pytest.raises(Forbidden, match="only an administrator"):
        rollout.enable_next(store, CLOCK, operator, Ring.PILOT, "checked by hand")
    done = rollout.enable_next(store, CLOCK, local_cli(), Ring.PILOT, "  lab checked by hand ")
    assert done.overridden and done.state.value == "audit"
    entry = store.state.audit[-1]
    assert (entry.action, entry.reason) == ("plan.component_enable_override", "lab checked by hand")
    assert store.state.rollout is not None and store.state.rollout.stored["Pilot"] == {"NGP": "audit"}


def test_refusals_change_nothing() -> None:
    store = world("NGP", signed_off=False)
    with pytest.raises(GateClosed, match="lacks sign-offs"):
        rollout.enable_next(store, CLOCK, local_cli(), Ring.PILOT)
    no_security = Principal("pm", frozenset({Permission.MANAGE_PORTAL_SETTINGS}), None, is_admin=True)
    with pytest.raises(Forbidden, match="Manage security settings"):
        rollout.enable_next(store, CLOCK, no_security, Ring.EVALUATE)
    assert store.state.actions == [] and store.state.audit == []
    with pytest.raises(Refused, match="there is no plan"):
        rollout.enable_next(MemoryStore(), CLOCK, local_cli())


def test_a_component_not_built_cannot_be_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(COMPONENTS, Component.ASR, dataclasses.replace(COMPONENTS[Component.ASR], built=False))
    store = world("NGP", "ASR")
    rollout.enable_next(store, CLOCK, local_cli())
    rollout.enable_next(store, CLOCK, local_cli())
    with pytest.raises(Refused, match=r"ASR \(Attack surface reduction\) is next .* not built"):
        rollout.enable_next(store, CLOCK, local_cli())


def test_a_missing_group_is_a_failed_step_with_its_error_and_a_retry_starts_over() -> None:
    store = world("NGP", groups={**GROUPS, Ring.EVALUATE: "Ring – Gone"})
    done = rollout.enable_next(store, CLOCK, local_cli())
    assert done.state.value == "failed"
    assert [(g.outcome, g.detail) for g in done.groups] == [("failed", "no device group named 'Ring – Gone'")]
    assert store.state.actions == [] and store.state.rollout is not None
    assert store.state.rollout.stored == {"Evaluate": {"NGP": "failed"}}
    assert store.state.audit[-1].after is not None and store.state.audit[-1].after["state"] == "failed"
    store.state.groups["Ring – Gone"] = 2
    again = rollout.enable_next(store, CLOCK, local_cli())
    assert (again.step.before.value, again.state.value) == ("failed", "audit")


def test_a_scoped_caller_cannot_push_to_a_group_outside_its_scope() -> None:
    store = world("NGP")
    scoped = Principal("sc", frozenset(Permission), frozenset({3}), is_admin=True)
    done = rollout.enable_next(store, CLOCK, scoped, Ring.EVALUATE)
    assert done.state.value == "failed" and "outside your device groups" in done.groups[0].detail
    assert store.state.actions == []
