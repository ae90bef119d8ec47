"""Each ring's component state, and the next step of the rollout ("enable the next component for ring X").

A ring holds one state per component of the plan: ``off``, ``audit`` (audit or passive mode), ``on`` or
``failed``. Enabling steps a component through its modes (Audit/passive first where it has modes, then on)
in the plan's adoption order. A step is refused, with the reason, when the component is not built in Vigil
yet, when an earlier ring has not reached that stage of the component, or when NGP would leave passive mode
on a ring whose plan still lists an incumbent antivirus.

Pushing the component's policy to the ring's device groups is ``vigil.app.rollout``'s; this module only says
which step comes next.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from vigil.core.plan import COMPONENTS, Component, Plan, Ring


class ComponentState(StrEnum):
    OFF = "off"
    AUDIT = "audit"  # Audit mode (ASR), passive mode (NGP next to another antivirus), approval-only (AIR)
    ON = "on"
    FAILED = "failed"


# The modes a component passes through when enabled, in order; the last is "on".
STAGES: dict[Component, tuple[ComponentState, ...]] = {
    Component.EDR: (ComponentState.ON,),
    Component.TVM: (ComponentState.ON,),
    Component.NGP: (ComponentState.AUDIT, ComponentState.ON),
    Component.ASR: (ComponentState.AUDIT, ComponentState.ON),
    Component.AIR: (ComponentState.AUDIT, ComponentState.ON),
}

RingStates = dict[str, dict[str, str]]  # ring -> component -> state, as stored


class RolloutRefused(ValueError):
    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Step:
    ring: Ring
    component: Component
    before: ComponentState
    after: ComponentState


def _rank(state: ComponentState) -> int:
    return {ComponentState.OFF: 0, ComponentState.FAILED: 0, ComponentState.AUDIT: 1, ComponentState.ON: 2}[state]


def states(plan: Plan, stored: RingStates) -> dict[Ring, dict[Component, ComponentState]]:
    """Every ring's state of every component the plan uses; EDR is on everywhere (it is the agent itself)."""
    used = [Component(c) for c in plan.adoption_order() if c in {k.value for k in Component}]
    out: dict[Ring, dict[Component, ComponentState]] = {}
    for ring in Ring:
        mine = stored.get(ring.value, {})
        row = {}
        for c in used:
            try:
                row[c] = ComponentState(mine.get(c.value, ComponentState.OFF.value))
            except ValueError:
                row[c] = ComponentState.OFF
        if Component.EDR in row:
            row[Component.EDR] = ComponentState.ON
        out[ring] = row
    return out


def next_step(plan: Plan, stored: RingStates, ring: Ring, incumbent_in_use: bool = False) -> Step:
    """The next component stage for ``ring`` in the adoption order, or RolloutRefused saying why not."""
    table = states(plan, stored)
    mine = table[ring]
    for comp, state in mine.items():
        stages = STAGES.get(comp, (ComponentState.ON,))
        if state is ComponentState.ON:
            continue
        after = stages[0] if state in (ComponentState.OFF, ComponentState.FAILED) else stages[-1]
        info = COMPONENTS[comp]
        if not info.built:
            raise RolloutRefused(f"{comp.value} ({info.title}) is next in the adoption order but is not built in "
                                 "Vigil yet, so it cannot be enabled; remove it from the plan to move past it",
                                 field="component")
        order = list(Ring)
        if ring is not order[0]:
            earlier = order[order.index(ring) - 1]
            if _rank(table[earlier].get(comp, ComponentState.OFF)) < _rank(after):
                raise RolloutRefused(f"{comp.value} must reach {after.value} in the {earlier.value} ring first",
                                     field="ring")
        if comp is Component.NGP and after is ComponentState.ON and incumbent_in_use:
            raise RolloutRefused("NGP stays passive while the plan lists an incumbent antivirus not yet removed; "
                                 "mark it removed in environment.incumbents first", field="component")
        return Step(ring, comp, state, after)
    raise RolloutRefused(f"every component of the plan is on in the {ring.value} ring already", field="ring")


def apply_step(stored: RingStates, step: Step) -> RingStates:
    out = {r: dict(v) for r, v in stored.items()}
    out.setdefault(step.ring.value, {})[step.component.value] = step.after.value
    return out
