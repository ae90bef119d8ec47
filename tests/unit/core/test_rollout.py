"""Each ring's component state and the next step: modes in order, rings in order, unbuilt components refused."""

from __future__ import annotations

import dataclasses

import pytest

from tests.unit.core.test_plan import complete
from vigil.core.plan import COMPONENTS, Component, Plan, Ring, plan_from_dict
from vigil.core.rollout import ComponentState, RolloutRefused, apply_step, next_step, states


def plan_without(*removed: str) -> Plan:
    d = complete()
    d["adoption"] = [a for a in d["adoption"] if a["component"] not in removed]
    return plan_from_dict(d)


def test_edr_is_on_everywhere_and_an_unbuilt_component_cannot_be_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(COMPONENTS, Component.TVM, dataclasses.replace(COMPONENTS[Component.TVM], built=False))
    plan = plan_without()
    table = states(plan, {})
    assert all(row[Component.EDR] is ComponentState.ON for row in table.values())
    assert table[Ring.PILOT][Component.NGP] is ComponentState.OFF
    with pytest.raises(RolloutRefused, match=r"TVM \(Threat and vulnerability management\) is next .* not built"):
        next_step(plan, {}, Ring.EVALUATE)


def test_a_plan_of_edr_only_is_done_at_once() -> None:
    plan = plan_without("TVM", "NGP", "ASR", "AIR")
    with pytest.raises(RolloutRefused, match="every component of the plan is on in the Evaluate ring"):
        next_step(plan, {}, Ring.EVALUATE)


def test_audit_first_then_on_ring_by_ring_and_ngp_stays_passive_next_to_an_incumbent() -> None:
    plan = plan_without("TVM", "ASR", "AIR")
    stored: dict[str, dict[str, str]] = {}
    with pytest.raises(RolloutRefused, match="NGP must reach audit in the Evaluate ring first"):
        next_step(plan, stored, Ring.PILOT)
    step = next_step(plan, stored, Ring.EVALUATE)
    assert (step.component, step.before, step.after) == (Component.NGP, ComponentState.OFF, ComponentState.AUDIT)
    stored = apply_step(stored, step)
    assert states(plan, stored)[Ring.EVALUATE][Component.NGP] is ComponentState.AUDIT
    assert states(plan, stored)[Ring.PILOT][Component.NGP] is ComponentState.OFF  # other rings untouched
    pilot = next_step(plan, stored, Ring.PILOT)
    assert pilot.after is ComponentState.AUDIT
    stored = apply_step(stored, pilot)
    with pytest.raises(RolloutRefused, match="NGP must reach on in the Evaluate ring first"):
        next_step(plan, stored, Ring.PILOT)
    with pytest.raises(RolloutRefused, match="NGP stays passive while the plan lists an incumbent antivirus"):
        next_step(plan, stored, Ring.EVALUATE, incumbent_in_use=True)
    on = next_step(plan, stored, Ring.EVALUATE)
    assert on.after is ComponentState.ON


def test_every_ranked_component_of_the_template_is_built() -> None:
    # TVM (inventory, exposure scores), NGP (the antivirus), ASR (rules, indicators), AIR: each can be enabled.
    assert [c for c, i in COMPONENTS.items() if i.recommended_rank is not None and not i.built] == []
    plan = plan_without()
    stored: dict[str, dict[str, str]] = {}
    seen = []
    while True:
        try:
            step = next_step(plan, stored, Ring.EVALUATE)
        except RolloutRefused as e:
            assert "every component of the plan is on" in str(e)
            break
        seen.append((step.component.value, step.after.value))
        stored = apply_step(stored, step)
    assert seen == [("TVM", "on"), ("NGP", "audit"), ("NGP", "on"), ("ASR", "audit"), ("ASR", "on"),
                    ("AIR", "audit"), ("AIR", "on")]


def test_the_plan_records_the_incumbent_and_its_removal() -> None:
    d = complete()
    d["environment"]["incumbents"] = [{"kind": "antivirus", "product": "ClamAV", "version": "1.0",
                                       "where": "all servers"}]
    plan = plan_from_dict(d)
    assert plan.incumbent_av_in_use
    d["environment"]["incumbents"][0]["removed"] = True
    assert not plan_from_dict(d).incumbent_av_in_use
