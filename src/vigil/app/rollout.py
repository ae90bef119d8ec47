"""Enabling a ring's next component: the plan's gates, then the component's policy pushed to the ring's device
groups through the signed-policy path (``vigil.app.antivirus``, ``vigil.app.asr``), each group's outcome
recorded with the ring's state and audited as ``plan.component_enable`` (``_override`` past unmet criteria).

A group whose push fails is recorded ``failed`` with the error, and the ring's component state becomes
``failed``: enabling again retries it from its first mode.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from vigil.app import antivirus, asr
from vigil.app.errors import AppError, Forbidden, GateClosed, Refused
from vigil.app.ports import AuditRecord, RolloutPlan, Store
from vigil.app.principal import Principal
from vigil.asr import AsrMode, catalogue
from vigil.core import rollout
from vigil.core.clock import Clock
from vigil.core.plan import Component, Ring
from vigil.core.rbac import Permission
from vigil.core.rollout import ComponentState, Step
from vigil.store.errors import StoreError

APPLIED, FAILED, NOTHING = "applied", "failed", "nothing to push"

# The antivirus mode each NGP stage sets: passive (reports, blocks nothing) first, then block.
NGP_MODES = {ComponentState.AUDIT: "passive", ComponentState.ON: "block"}


@dataclass(frozen=True)
class GroupOutcome:
    """What one device group of the ring got: ``applied`` (what was set), ``failed`` (the error) or
    ``nothing to push`` (the component has no device policy)."""

    group: str
    outcome: str
    detail: str
    devices_updated: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"group": self.group, "outcome": self.outcome, "detail": self.detail,
                "devicesUpdated": self.devices_updated}


@dataclass(frozen=True)
class Rollout:
    step: Step
    state: ComponentState  # step.after, or failed when a group's push failed
    groups: tuple[GroupOutcome, ...]
    plan_version: int
    overridden: bool  # passed the previous ring's unmet exit criteria with a reason

    def as_json(self) -> dict[str, Any]:
        return {"ring": self.step.ring.value, "component": self.step.component.value,
                "before": self.step.before.value, "state": self.state.value,
                "groups": [g.as_json() for g in self.groups], "planVersion": self.plan_version,
                "overridden": self.overridden}


def _plan(store: Store) -> RolloutPlan:
    with store.begin() as uow:
        found = uow.plan.rollout()
    if found is None:
        raise Refused("there is no plan; the adoption order comes from it (`vigil plan init`)")
    return found


def enable_next(store: Store, clock: Clock, who: Principal, ring: Ring | None = None,
                override_reason: str | None = None) -> Rollout:
    """Step ``ring``'s (the current ring's) next component in the plan's adoption order and push its policy.

    Refused (nothing changes) for a component not built yet, one the previous ring has not reached, NGP leaving
    passive mode while the plan lists an incumbent antivirus, any ring but Evaluate before sign-off, and — past
    the first ring — the previous ring's unmet exit criteria unless an administrator gives a reason.
    """
    who.require(Permission.MANAGE_PORTAL_SETTINGS)  # the plan's permission
    who.require(Permission.MANAGE_SECURITY_SETTINGS)  # it changes the devices' protection policy
    reason = (override_reason or "").strip()
    if reason and not who.is_admin:
        raise Forbidden("only an administrator may override exit criteria")
    now = clock.now()
    rp = _plan(store)
    ring = ring or rp.ring
    if ring is not Ring.EVALUATE and not rp.signed_off:
        raise GateClosed("the plan lacks sign-offs; rings beyond Evaluate need every SO stakeholder's signature",
                         field="ring")
    try:
        step = rollout.next_step(rp.plan, rp.stored, ring, incumbent_in_use=rp.plan.incumbent_av_in_use)
    except rollout.RolloutRefused as e:
        raise Refused(str(e), field=e.field) from None
    unmet: tuple[str, ...] = ()
    order = list(Ring)
    if ring is not order[0]:
        earlier = order[order.index(ring) - 1]
        with store.begin() as uow:
            unmet = uow.plan.unmet_criteria(earlier, now)
        if unmet and not reason:
            raise Refused(f"{step.component.value} waits for the {earlier.value} ring's exit criteria: "
                          + "; ".join(unmet), field="override_reason")
    group = rp.ring_groups.get(ring)
    if group is None:
        raise Refused(f"the plan gives the {ring.value} ring no device group (rings[].device_group)", field="ring")
    outcomes = (_push(store, clock, who, step, group),)
    state = ComponentState.FAILED if any(o.outcome == FAILED for o in outcomes) else step.after
    done = Rollout(step, state, outcomes, rp.version, bool(unmet))
    result = {"state": state.value, "at": now.isoformat(), "actor": who.actor,
              "groups": [o.as_json() for o in outcomes]}
    with store.begin() as uow:
        uow.plan.save_rollout(ring, step.component.value, state.value, result, now)
        uow.audit.append(AuditRecord(
            who.actor, "plan.component_enable_override" if unmet else "plan.component_enable", "component",
            step.component.value, before={"ring": ring.value, "state": step.before.value},
            after={"ring": ring.value, "state": state.value, "plan_version": rp.version,
                   "groups": [o.as_json() for o in outcomes], **({"unmet": list(unmet)} if unmet else {})},
            reason=reason if unmet else None, source_ip=who.source_ip), now)
    return done


def _push(store: Store, clock: Clock, who: Principal, step: Step, group: str) -> GroupOutcome:
    """Set ``step``'s component policy on ``group`` through its own service (permission, audit, signed delivery)."""
    try:
        with store.begin() as uow:
            gid = uow.devices.group_id(group, clock.now())  # a ring whose group is missing holds no device
        if not who.sees_group(gid):
            raise Forbidden(f"the {step.ring.value} ring's device group {group!r} is outside your device groups")
        if step.component is Component.NGP:
            mode = NGP_MODES[step.after]
            view = antivirus.set_mode(store, clock, who, group, mode)
            return GroupOutcome(group, APPLIED, f"antivirus mode {mode}", view.devices_updated)
        if step.component is Component.ASR:
            return _push_asr(store, clock, who, step.after, group)
    except (AppError, StoreError) as e:
        # Recorded with the ring's state and in the audit record: a failed push is never silent.
        return GroupOutcome(group, FAILED, str(e))
    return GroupOutcome(group, NOTHING, _NO_DEVICE_POLICY.get(step.component, "no device policy"))


_NO_DEVICE_POLICY = {
    Component.EDR: "EDR is the agent itself: on wherever a device is onboarded",
    Component.TVM: "the agent's software inventory already reports; exposure is computed on the server",
    Component.AIR: "investigations act from the server per the device group's automation level",
}


def _push_asr(store: Store, clock: Clock, who: Principal, after: ComponentState, group: str) -> GroupOutcome:
    """Audit stage: every rule the group has Off goes to Audit. On: every rule in Audit goes to Block. A rule
    an administrator set otherwise (Off after an audit finding, Warn) keeps its mode."""
    default = asr.policy(store, clock, who, None).policy
    own = asr.policy(store, clock, who, group).policy
    modes = dict(own.modes)
    changed = []
    for entry in catalogue():
        current = own.modes.get(entry.guid, default.modes.get(entry.guid, AsrMode.OFF))
        if after is ComponentState.AUDIT and current is AsrMode.OFF and entry.guid not in own.modes:
            modes[entry.guid] = AsrMode.AUDIT
        elif after is ComponentState.ON and current is AsrMode.AUDIT:
            modes[entry.guid] = AsrMode.BLOCK
        else:
            continue
        changed.append(entry.name)
    target = "Audit" if after is ComponentState.AUDIT else "Block"
    view = asr.set_policy(store, clock, who, group, replace(own, modes=modes))
    return GroupOutcome(group, APPLIED, f"{len(changed)} ASR rule(s) to {target}", view.devices_updated)

