"""The Prepare phase as a service: plan versions, sign-off, the onboarding gate, apply, rings, export."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
import yaml

from vigil.core import rollout
from vigil.core.groups import AutomationLevel, parse_conditions
from vigil.core.plan import (
    COMPONENTS,
    NOT_APPLICABLE,
    Component,
    Gap,
    Plan,
    PlanFormatError,
    Ring,
    SignoffStatus,
    adoption_warnings,
    default_plan,
    plan_digest,
    plan_from_dict,
    plan_to_dict,
    signoff_status,
    validate,
)
from vigil.core.rbac import ADMIN_ROLE_NAME, PermissionsMode, parse_permissions
from vigil.core.sensor_health import MAX_LOSS, event_loss, incumbent, sensor_problems
from vigil.store import audit, groups, plans, rbac
from vigil.store.audit import Change
from vigil.store.devices import aware, stored_group_name
from vigil.store.schema import alerts, device_groups, devices
from vigil.store.tenant import get_setting, set_setting
from vigil.store.users import User

RING_KEY = "deployment.ring"
RING_COMPONENTS_KEY = "deployment.ring_components"  # ring -> component -> off|audit|on|failed
RING_RESULTS_KEY = "deployment.ring_component_results"  # ring -> component -> its last step's outcome per group
DETECTION_TEST_RULE_ID = "3ff0d242-5e81-4c5b-b8a1-f1e07cab5b2b"
DETECTION_TEST_COMMAND = "echo vigil-detection-test"
REPORTING_WINDOW = timedelta(hours=24)


class PlanError(Exception):
    """A plan operation that cannot proceed; ``field`` says which input, ``gaps`` lists plan gaps."""

    def __init__(self, message: str, field: str | None = None, gaps: list[Gap] | None = None) -> None:
        super().__init__(message)
        self.field, self.gaps = field, gaps or []


class GateClosed(PlanError):
    """A ring beyond Evaluate while the current plan lacks sign-offs (onboarding's gate: vigil.app.onboarding)."""


# Emergency overrides of the plan's gates, each audited with its reason and shown on the plan.
OVERRIDE_ACTIONS = ("onboarding.gate_override", "ring.promote_override", "plan.component_enable_override")


@dataclass(frozen=True)
class Override:
    at: datetime
    actor: str
    action: str
    target: str
    reason: str
    plan_version: int | None

    @property
    def label(self) -> str:
        return {"onboarding.gate_override": "Onboarding before sign-off", "ring.promote_override": "Ring promoted",
                }.get(self.action, "Component enabled before the previous ring's criteria")


def overrides(conn: sa.Connection, limit: int = 100) -> tuple[Override, ...]:
    """The gate overrides from the audit log, newest first."""
    out = []
    for action in OVERRIDE_ACTIONS:
        for e, _ in audit.entries(conn, action=action, limit=limit, newest_first=True):
            after = e.after if isinstance(e.after, dict) else {}
            version = after.get("plan_version")
            out.append(Override(e.at, e.actor, e.action, e.target_id, e.reason or "",
                                version if isinstance(version, int) else None))
    return tuple(sorted(out, key=lambda o: o.at, reverse=True)[:limit])


def load_yaml(text: str) -> Plan:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "document"
        raise PlanFormatError([Gap(where, f"not valid YAML: {getattr(e, 'problem', e)}")]) from None
    return plan_from_dict(data)


def dump_yaml(plan: Plan) -> str:
    head = "# Vigil deployment plan. Edit, then `vigil plan validate`; any change voids earlier sign-offs.\n"
    return head + yaml.safe_dump(plan_to_dict(plan), sort_keys=False, allow_unicode=True, width=110)


@dataclass(frozen=True)
class PlanState:
    version: int
    document: str
    digest: str
    plan: Plan
    gaps: tuple[Gap, ...]
    signoffs: SignoffStatus
    signatures: tuple[plans.Signoff, ...]
    ring: Ring
    components: tuple[str, ...]  # the components on (or in audit/passive mode) in the current ring
    overrides: tuple[Override, ...] = ()
    ring_components: dict[str, dict[str, str]] = field(default_factory=dict)  # every ring's component states
    # The last enable step of each ring's components: {"state", "at", "actor", "groups": [{group, outcome, ...}]}
    ring_results: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def phase(self) -> str:
        return "Onboard" if self.signoffs.complete else "Prepare"

    @property
    def gate_open(self) -> bool:
        return self.signoffs.complete

    @property
    def warnings(self) -> tuple[Gap, ...]:
        """Advice that blocks nothing: the adoption order, removed components, unmet prerequisites."""
        return tuple(adoption_warnings(self.plan))


def component_rows(plan: Plan) -> list[dict[str, Any]]:
    """Each component of the template: the plan's rank (or removed / not applicable), Microsoft's, whether built."""
    ranks = {a.component: a.rank for a in plan.adoption}
    rows = []
    for comp, info in COMPONENTS.items():
        listed = comp.value in ranks
        rank = ranks.get(comp.value)
        rows.append({
            "component": comp.value, "title": info.title,
            "rank": rank if rank is not None else (NOT_APPLICABLE if listed else None),
            "used": listed, "recommendedRank": info.recommended_rank or NOT_APPLICABLE,
            "built": info.built, "needs": [" or ".join(n) for n in info.needs],
            "status": "removed" if not listed else ("available" if info.built else "not built yet")
            if comp is not Component.MTE else NOT_APPLICABLE,
        })
    return rows


def state(conn: sa.Connection) -> PlanState | None:
    stored = plans.current_plan(conn)
    if stored is None:
        return None
    plan = load_yaml(stored.document)
    sigs = plans.signoffs(conn, stored.version)
    status = signoff_status(plan, stored.version, stored.digest, [(s.version, s.digest, s.email) for s in sigs])
    ring = Ring(get_setting(conn, RING_KEY, Ring.EVALUATE.value))
    table = rollout.states(plan, get_setting(conn, RING_COMPONENTS_KEY, {}))
    live = (rollout.ComponentState.AUDIT, rollout.ComponentState.ON)
    on = tuple(c.value for c, v in table[ring].items() if v in live)
    return PlanState(
        stored.version, stored.document, stored.digest, plan, tuple(validate(plan)), status, tuple(sigs),
        ring, on, overrides(conn),
        {r.value: {c.value: v.value for c, v in row.items()} for r, row in table.items()},
        get_setting(conn, RING_RESULTS_KEY, {}),
    )


def save(conn: sa.Connection, text: str, actor: str, now: datetime, ip: str | None = None) -> tuple[PlanState, bool]:
    """Store the document as the next version (unless unchanged); earlier sign-offs stop counting."""
    plan = load_yaml(text)
    before = plans.current_plan(conn)
    _, added = plans.save_plan(conn, text, plan_digest(plan), actor, now)
    if added:
        after = plans.current_plan(conn)
        assert after is not None
        audit.append(conn, Change(actor, "plan.edit", "plan", str(after.version),
                                  before={"version": before.version, "digest": before.digest} if before else None,
                                  after={"version": after.version, "digest": after.digest}, source_ip=ip), now)
    st = state(conn)
    assert st is not None
    return st, added


def init(conn: sa.Connection, actor: str, now: datetime, organization: str = "Example organization") -> PlanState:
    if plans.current_plan(conn) is not None:
        raise PlanError("a plan exists already; edit it instead")
    st, _ = save(conn, dump_yaml(default_plan(organization)), actor, now)
    return st


def sign(conn: sa.Connection, user: User, now: datetime, ip: str | None = None) -> PlanState:
    """The signed-in user signs off the current version as the SO stakeholder with their e-mail."""
    st = state(conn)
    if st is None:
        raise PlanError("there is no plan to sign; run `vigil plan init`")
    if st.gaps:
        raise PlanError(f"the plan has {len(st.gaps)} gap(s); fix them before signing", gaps=list(st.gaps))
    email = (user.email or "").lower()
    signer = next((s for s in st.plan.signers if s.email.lower() == email), None)
    if not email or signer is None:
        raise PlanError(f"{user.username} ({user.email or 'no e-mail'}) is not a sign-off (SO) stakeholder of the plan",
                        field="email")
    if plans.record_signoff(conn, st.version, st.digest, email, user.username, now):
        audit.append(conn, Change(user.username, "plan.signoff", "plan", str(st.version),
                                  after={"stakeholder": signer.email, "role": signer.role, "digest": st.digest},
                                  source_ip=ip), now)
    new = state(conn)
    assert new is not None
    return new


def _desired(plan: Plan) -> dict[str, Any]:
    return {
        "mode": plan.mode,
        "roles": {r.name: {"permissions": sorted(r.permissions), "user_groups": sorted(r.user_groups),
                           "description": r.description} for r in plan.roles},
        "device_groups": {g.name: {"rules": [c.as_dict() for c in parse_conditions(list(g.rules))],
                                   "automation_level": g.automation_level, "user_groups": sorted(g.user_groups),
                                   "rank": g.rank} for g in plan.device_groups},
    }


def _actual(conn: sa.Connection) -> dict[str, Any]:
    return {
        "mode": rbac.get_mode(conn).value,
        "roles": {r.name: {"permissions": sorted(p.value for p in r.permissions), "user_groups": sorted(r.user_groups),
                           "description": r.description} for r in rbac.list_roles(conn) if r.name != ADMIN_ROLE_NAME},
        "device_groups": {g.name: {"rules": [c.as_dict() for c in g.rules],
                                   "automation_level": g.automation_level.value,
                                   "user_groups": sorted(g.user_groups), "rank": g.rank}
                          for g in groups.list_groups(conn) if not g.is_default},
    }


def diff(conn: sa.Connection, plan: Plan) -> list[str]:
    """What `apply` would change, one line each; empty when the server already matches the plan."""
    want, have = _desired(plan), _actual(conn)
    out = []
    if want["mode"] == PermissionsMode.RBAC.value and have["mode"] != want["mode"]:
        out.append("switch permissions to RBAC mode (cannot be undone)")
    for kind in ("roles", "device_groups"):
        label = "role" if kind == "roles" else "device group"
        for name, spec in want[kind].items():
            cur = have[kind].get(name)
            if cur is None:
                out.append(f"+ {label} {name!r}")
            else:
                for k, v in spec.items():
                    if cur.get(k) != v and k != "rank":
                        out.append(f"~ {label} {name!r}: {k} {cur.get(k)!r} → {v!r}")
    # The plan's groups take ranks 1..n in the plan's order, ahead of groups made outside the plan.
    ranked = [n for n, _ in sorted(want["device_groups"].items(), key=lambda kv: kv[1]["rank"])]
    current = [n for n, _ in sorted(have["device_groups"].items(), key=lambda kv: kv[1]["rank"] or 0)]
    if ranked and current[: len(ranked)] != ranked:
        out.append(f"~ device group ranks → {', '.join(ranked)} first")
    return out


def apply(conn: sa.Connection, actor: str, now: datetime, ip: str | None = None) -> list[str]:
    """Create the roles, user groups and device groups of the current plan; idempotent."""
    st = state(conn)
    if st is None:
        raise PlanError("there is no plan to apply; run `vigil plan init`")
    if st.gaps:
        raise PlanError(f"the plan has {len(st.gaps)} gap(s); fix them before applying", gaps=list(st.gaps))
    changes = diff(conn, st.plan)
    if not changes:
        return []
    plan = st.plan
    for r in plan.roles:
        rbac.put_role(conn, r.name, r.description, parse_permissions(list(r.permissions)), list(r.user_groups), now)
    for g in plan.device_groups:
        groups.put_group(conn, g.name, now=now, rules=list(g.rules),
                         automation_level=AutomationLevel(g.automation_level), user_groups=list(g.user_groups))
    ranked = [g.name for g in sorted(plan.device_groups, key=lambda g: g.rank)]
    others = [g.name for g in groups.list_groups(conn) if not g.is_default and g.name not in ranked]
    groups.set_ranks(conn, ranked + others)
    if plan.mode == PermissionsMode.RBAC.value:
        rbac.switch_to_rbac(conn, now)
    audit.append(conn, Change(actor, "plan.apply", "plan", str(st.version), after={"changes": changes},
                              source_ip=ip), now)
    return changes


@dataclass(frozen=True)
class Criterion:
    """One exit criterion of a ring: its live value, its target, and the devices that fail it."""

    name: str
    met: bool
    detail: str
    value: str = ""
    target: str = ""
    failing: tuple[dict[str, str], ...] = ()  # {"id", "name", "why"}, at most MAX_FAILING_LISTED


MAX_FAILING_LISTED = 50


def _failing(rows: list[Any], why: dict[str, str]) -> tuple[dict[str, str], ...]:
    return tuple({"id": r.id, "name": r.computer_dns_name, "why": why[r.id]} for r in rows if r.id in why
                 )[:MAX_FAILING_LISTED]


def ring_criteria(conn: sa.Connection, st: PlanState, now: datetime, ring: Ring | None = None) -> list[Criterion]:
    """The exit criteria of a ring (the current one by default), checked against what its devices report."""
    ring = ring or st.ring
    name = st.plan.ring_group(ring)
    name = None if name is None else stored_group_name(conn, name)
    gid = conn.execute(sa.select(device_groups.c.id).where(device_groups.c.name == name)).scalar()
    rows = [] if gid is None else list(conn.execute(
        sa.select(devices).where(devices.c.group_id == gid, devices.c.offboarded_at.is_(None))
        .order_by(devices.c.computer_dns_name)).all())
    target = next((r.target_devices for r in st.plan.rings if r.ring == ring.value), 0)
    n = len(rows)
    problems = {r.id: "; ".join(p) for r in rows if (p := sensor_problems(r.sensors, r.counters))}
    healthy = n - len(problems)
    stale = {r.id: f"last seen {aware(r.last_seen):%Y-%m-%d %H:%M} UTC" for r in rows
             if now - aware(r.last_seen) > REPORTING_WINDOW}
    tested: set[str] = set()
    if rows:
        tested = {m for (m,) in conn.execute(sa.select(alerts.c.machine_id).distinct().where(
            alerts.c.rule_id == DETECTION_TEST_RULE_ID, alerts.c.machine_id.in_([r.id for r in rows])))}
    untested = {r.id: f"no detection test alert yet (run `{DETECTION_TEST_COMMAND}`)" for r in rows
                if r.id not in tested}
    loss = {r.id: event_loss(r.counters) for r in rows}
    dropped, produced = sum(d for d, _ in loss.values()), sum(p for _, p in loss.values())
    lossy = {i: f"{d} of {p} event(s) dropped" for i, (d, p) in loss.items() if d and d > MAX_LOSS * p}
    count_met = healthy >= target and n >= target if target else n > 0 and healthy == n
    return [
        Criterion("Target devices", count_met,
                  f"{n} device(s) enrolled in {name!r}, {healthy} healthy; target "
                  + (f"{target}" if target else "every remaining device, all healthy"),
                  value=f"{n} enrolled, {healthy} healthy",
                  target=f"{target} enrolled and healthy" if target else "all enrolled devices healthy",
                  failing=_failing(rows, problems)),
        Criterion("Devices reporting", n > 0 and not stale,
                  f"{n - len(stale)} of {n} device(s) in {name!r} reported in the last 24 h",
                  value=f"{n - len(stale)} of {n}", target="every device, within 24 h",
                  failing=_failing(rows, stale)),
        Criterion("Sensor healthy", n > 0 and not problems,
                  f"{healthy} of {n} device(s) have every sensor active, the resource budget within limits and "
                  "at most 0.1 % of events dropped",
                  value=f"{healthy} of {n}", target="every device", failing=_failing(rows, problems)),
        Criterion("Detection test passed", n > 0 and not untested,
                  f"{len(tested)} of {n} device(s) raised the detection test alert (run `{DETECTION_TEST_COMMAND}`)",
                  value=f"{len(tested)} of {n}", target="every device", failing=_failing(rows, untested)),
        Criterion("No crash or drop regression", n > 0 and dropped <= MAX_LOSS * produced,
                  f"{dropped} of {produced} event(s) dropped (at most 0.1% allowed)",
                  value=f"{dropped} of {produced} dropped", target="at most 0.1 %", failing=_failing(rows, lossy)),
    ]


def promote(conn: sa.Connection, actor: str, now: datetime, override_reason: str | None = None,
            ip: str | None = None) -> Ring:
    """Move to the next ring when the current ring's criteria are met, or with an audited override."""
    st = state(conn)
    if st is None:
        raise PlanError("there is no plan; rings follow the plan")
    nxt = st.ring.next
    if nxt is None:
        raise PlanError("the deployment is already in the Full ring")
    if not st.gate_open:
        raise GateClosed("the plan lacks sign-offs; rings beyond Evaluate need every SO stakeholder's signature")
    unmet = [c for c in ring_criteria(conn, st, now) if not c.met]
    if unmet and not (override_reason and override_reason.strip()):
        raise PlanError("exit criteria not met: " + "; ".join(f"{c.name} ({c.detail})" for c in unmet),
                        field="override_reason")
    set_setting(conn, RING_KEY, nxt.value, now)
    audit.append(conn, Change(actor, "ring.promote_override" if unmet else "ring.promote", "ring", nxt.value,
                              before={"ring": st.ring.value}, after={"ring": nxt.value, "plan_version": st.version},
                              reason=override_reason.strip() if unmet and override_reason else None, source_ip=ip), now)
    return nxt


def incumbent_devices(conn: sa.Connection, plan: Plan) -> dict[str, list[dict[str, str]]]:
    """The migration view: per ring, the devices whose agent still sees an incumbent antivirus/EDR running."""
    out: dict[str, list[dict[str, str]]] = {}
    for ring in Ring:
        name = plan.ring_group(ring)
        name = None if name is None else stored_group_name(conn, name)
        rows = conn.execute(
            sa.select(devices.c.id, devices.c.computer_dns_name, devices.c.sensors)
            .join(device_groups, device_groups.c.id == devices.c.group_id)
            .where(device_groups.c.name == name, devices.c.offboarded_at.is_(None))
            .order_by(devices.c.computer_dns_name)).all()
        out[ring.value] = [{"id": r.id, "name": r.computer_dns_name, "incumbent": line}
                           for r in rows if (line := incumbent(r.sensors)) is not None]
    return out
