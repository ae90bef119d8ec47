"""The deployment plan (Prepare): stakeholders, environment, RBAC plan, adoption order, rings; its gaps."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from vigil.core.groups import AutomationLevel, GroupRuleError, parse_conditions
from vigil.core.rbac import (
    ADMIN_ROLE_NAME,
    STAKEHOLDER_PERMISSIONS,
    STAKEHOLDER_ROLE_NAME,
    TIER_PERMISSIONS,
    Permission,
    PermissionsMode,
)

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class Action(StrEnum):
    SIGN_OFF = "SO"
    REVIEW = "R"
    INFORMED = "I"


class Component(StrEnum):
    EDR = "EDR"
    TVM = "TVM"
    NGP = "NGP"
    ASR = "ASR"
    AIR = "AIR"
    MTE = "MTE"


@dataclass(frozen=True)
class ComponentInfo:
    """A component as the deployment template means it: its recommended rank, why, and what it needs."""

    component: Component
    title: str
    recommended_rank: int | None  # None: "not applicable" (a service, not part of the adoption order)
    why: str  # why Microsoft puts it where it is in the order
    # Prerequisites: each is a tuple of alternatives (any one of them will do); "indicators" is not a component.
    needs: tuple[tuple[str, ...], ...] = ()
    needs_why: str = ""
    built: bool = False  # whether Vigil has it yet; a component that is not built cannot be enabled


COMPONENTS: dict[Component, ComponentInfo] = {c.component: c for c in (
    ComponentInfo(Component.EDR, "Endpoint detection and response", 1,
                  "it is the sensor everything else runs on and gives visibility first without changing anything "
                  "on the devices", built=True),
    ComponentInfo(Component.TVM, "Threat and vulnerability management", 2,
                  "it uses the same sensor's inventory to show what to fix before anything starts blocking",
                  needs=(("EDR",),), needs_why="it reads the EDR sensor's software inventory",
                  built=True),  # vigil.tvm: inventory, advisories, exposure scores; docs/vulnerability-management.md
    ComponentInfo(Component.NGP, "Next-generation protection (antivirus)", 3,
                  "it blocks malware once EDR shows what runs where, and starts passive next to the incumbent "
                  "antivirus", needs=(("EDR",),), needs_why="it reports through the EDR sensor",
                  built=True),  # vigil.av and the agent's antivirus sensor; docs/antivirus.md
    ComponentInfo(Component.ASR, "Attack surface reduction", 4,
                  "its rules block behaviours, so they are tuned in audit mode against what EDR and NGP have "
                  "already shown", needs=(("NGP",),), needs_why="its rules are enforced by the antivirus engine",
                  built=True),  # vigil.asr: rules, policies per group, indicators; docs/asr-and-indicators.md
    ComponentInfo(Component.AIR, "Automated investigation and remediation", 5,
                  "it acts on devices on its own, so it comes last, once detections are tuned",
                  needs=(("NGP", "indicators"),),
                  needs_why="it remediates with the antivirus (NGP) or with indicators",
                  built=True),  # vigil.air; docs/automated-investigation.md says what it does not do yet
    ComponentInfo(Component.MTE, "Managed threat hunting (Microsoft Threat Experts)", None,
                  "it is a managed service, not a component rolled out to devices"),
)}

# Defender's recommended adoption order.
RANKED_COMPONENTS = tuple(c for c, i in sorted(COMPONENTS.items(), key=lambda kv: kv[1].recommended_rank or 99)
                          if i.recommended_rank is not None)
NOT_APPLICABLE = "not applicable"


class Ring(StrEnum):
    EVALUATE = "Evaluate"
    PILOT = "Pilot"
    FULL = "Full"

    @property
    def next(self) -> Ring | None:
        order = list(Ring)
        i = order.index(self)
        return order[i + 1] if i + 1 < len(order) else None


@dataclass(frozen=True)
class Stakeholder:
    name: str
    email: str
    role: str
    action: str


INCUMBENT_KINDS = ("antivirus", "edr")


@dataclass(frozen=True)
class Incumbent:
    """The security product already on the devices: NGP starts passive next to an antivirus until it is removed."""

    kind: str  # antivirus or edr
    product: str
    version: str = ""
    where: str = ""  # which devices: "all servers", a device group, …
    removed: bool = False


@dataclass(frozen=True)
class Environment:
    endpoint_count: int = 0
    server_count: int = 0
    management_engine: str = ""
    cdoc_distribution: str = ""
    siem: str = ""
    incumbents: tuple[Incumbent, ...] = ()


@dataclass(frozen=True)
class Persona:
    name: str
    role: str


@dataclass(frozen=True)
class PlanRole:
    name: str
    description: str
    permissions: tuple[str, ...]
    user_groups: tuple[str, ...]
    tier: int | None = None


@dataclass(frozen=True)
class PlanDeviceGroup:
    name: str
    rank: int
    automation_level: str
    rules: tuple[dict[str, str], ...]
    user_groups: tuple[str, ...]


@dataclass(frozen=True)
class RingPlan:
    ring: str
    device_group: str
    target_devices: int


@dataclass(frozen=True)
class Adoption:
    component: str
    rank: int | None


@dataclass(frozen=True)
class Plan:
    organization: str
    stakeholders: tuple[Stakeholder, ...]
    environment: Environment
    mode: str
    personas: tuple[Persona, ...]
    roles: tuple[PlanRole, ...]
    device_groups: tuple[PlanDeviceGroup, ...]
    adoption: tuple[Adoption, ...]
    rings: tuple[RingPlan, ...]

    @property
    def signers(self) -> tuple[Stakeholder, ...]:
        return tuple(s for s in self.stakeholders if s.action == Action.SIGN_OFF.value)

    @property
    def user_groups(self) -> tuple[str, ...]:
        names = [ug for r in self.roles for ug in r.user_groups]
        names += [ug for d in self.device_groups for ug in d.user_groups]
        return tuple(dict.fromkeys(names))

    @property
    def incumbent_av_in_use(self) -> bool:
        return any(i.kind == "antivirus" and not i.removed for i in self.environment.incumbents)

    def ring_group(self, ring: Ring) -> str | None:
        return next((r.device_group for r in self.rings if r.ring == ring.value), None)

    def adoption_order(self) -> list[str]:
        ranked = sorted((a for a in self.adoption if a.rank is not None), key=lambda a: a.rank or 0)
        return [a.component for a in ranked]

    @property
    def removed(self) -> list[str]:
        """Components the site chose not to use: the ones left out of the adoption list."""
        listed = {a.component for a in self.adoption}
        return [c.value for c in Component if c.value not in listed]


@dataclass(frozen=True)
class Gap:
    """Something the plan lacks or gets wrong; ``where`` is a path into the document."""

    where: str
    problem: str

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}"


class PlanFormatError(ValueError):
    def __init__(self, gaps: list[Gap]) -> None:
        super().__init__("; ".join(str(g) for g in gaps))
        self.gaps = gaps


def _tier(n: int) -> tuple[str, ...]:
    return tuple(sorted(p.value for p in TIER_PERMISSIONS[n]))


def default_plan(organization: str = "Example organization") -> Plan:
    """The seed: Defender's stakeholders, personas, CDOC tiers, adoption order and three rings."""
    tiers = (
        PlanRole("CDOC Tier 1", "Local CDOC: triage and escalate", _tier(1),
                 ("cdoc-tier1",), 1),
        PlanRole("CDOC Tier 2", "Regional CDOC: investigate and remediate", _tier(2),
                 ("cdoc-tier2",), 2),
        PlanRole("CDOC Tier 3", "Global CDOC: everything, including settings", _tier(3),
                 ("cdoc-tier3",), 3),
        PlanRole("Endpoint administrator", "Onboards and offboards devices",
                 (Permission.VIEW_DATA_SECOPS.value, Permission.MANAGE_SECURITY_SETTINGS.value,
                  Permission.VIEW_PLAN_REPORTS.value), ("endpoint-admins",)),
        PlanRole(STAKEHOLDER_ROLE_NAME, "Built-in, read-only: the plan, reports and ring progress; no device data",
                 tuple(sorted(p.value for p in STAKEHOLDER_PERMISSIONS)), ("business-stakeholders",)),
    )
    everyone = ("cdoc-tier1", "cdoc-tier2", "cdoc-tier3", "endpoint-admins")
    rings = (
        PlanDeviceGroup("Ring – Evaluate", 1, AutomationLevel.SEMI_ANY.value,
                        ({"property": "tag", "operator": "equals", "value": "ring-evaluate"},), everyone),
        PlanDeviceGroup("Ring – Pilot", 2, AutomationLevel.SEMI_ANY.value,
                        ({"property": "tag", "operator": "equals", "value": "ring-pilot"},), everyone),
        PlanDeviceGroup("Ring – Full", 3, AutomationLevel.FULL.value,
                        ({"property": "tag", "operator": "equals", "value": "ring-full"},), everyone),
    )
    return Plan(
        organization=organization,
        stakeholders=(
            Stakeholder("", "", "CISO", Action.SIGN_OFF.value),
            Stakeholder("", "", "Head of CDOC", Action.SIGN_OFF.value),
            Stakeholder("", "", "Security Architect", Action.REVIEW.value),
            Stakeholder("", "", "Workplace Architect", Action.REVIEW.value),
            Stakeholder("", "", "Security Analyst", Action.INFORMED.value),
        ),
        environment=Environment(),
        mode=PermissionsMode.RBAC.value,
        personas=(
            Persona("Security Admin", ADMIN_ROLE_NAME),
            Persona("Security Analyst", "CDOC Tier 2"),
            Persona("Endpoint Admin", "Endpoint administrator"),
            Persona("Infrastructure Admin", "Endpoint administrator"),
            Persona("Business Owner", STAKEHOLDER_ROLE_NAME),
        ),
        roles=tiers,
        device_groups=rings,
        adoption=tuple(Adoption(c.value, info.recommended_rank) for c, info in COMPONENTS.items()),
        rings=(RingPlan(Ring.EVALUATE.value, "Ring – Evaluate", 50), RingPlan(Ring.PILOT.value, "Ring – Pilot", 100),
               RingPlan(Ring.FULL.value, "Ring – Full", 0)),
    )


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    # Through JSON so that tuples become lists and enums plain strings, as a YAML or JSON document has them.
    d = json.loads(json.dumps(asdict(plan)))
    for a in d["adoption"]:
        a["rank"] = NOT_APPLICABLE if a["rank"] is None else a["rank"]
    if not d["environment"]["incumbents"]:
        del d["environment"]["incumbents"]  # a plan without them keeps the digest it had before they existed
    return {
        "organization": d["organization"],
        "stakeholders": d["stakeholders"],
        "environment": d["environment"],
        "rbac": {"mode": d["mode"], "personas": d["personas"], "roles": d["roles"],
                 "device_groups": d["device_groups"]},
        "adoption": d["adoption"],
        "rings": d["rings"],
    }


def plan_digest(plan: Plan) -> str:
    """What sign-offs commit to: any change to the content changes it."""
    return hashlib.sha256(json.dumps(plan_to_dict(plan), sort_keys=True, ensure_ascii=False).encode()).hexdigest()


@dataclass
class _Reader:
    gaps: list[Gap] = field(default_factory=list)

    def mapping(self, v: Any, where: str) -> dict[str, Any]:
        if v is None:
            return {}
        if not isinstance(v, dict):
            self.gaps.append(Gap(where, "must be a mapping"))
            return {}
        return v

    def items(self, v: Any, where: str) -> list[dict[str, Any]]:
        if v is None:
            return []
        if not isinstance(v, list):
            self.gaps.append(Gap(where, "must be a list"))
            return []
        return [self.mapping(x, f"{where}[{i}]") for i, x in enumerate(v)]

    def text(self, v: Any, where: str) -> str:
        if v is None:
            return ""
        if not isinstance(v, str | int | float):
            self.gaps.append(Gap(where, "must be text"))
            return ""
        return str(v).strip()

    def number(self, v: Any, where: str, default: int | None = 0) -> int | None:
        if v is None or v == "":
            return default
        if isinstance(v, bool) or not isinstance(v, int):
            self.gaps.append(Gap(where, "must be a whole number"))
            return default
        return v

    def texts(self, v: Any, where: str) -> tuple[str, ...]:
        if v is None:
            return ()
        if not isinstance(v, list):
            self.gaps.append(Gap(where, "must be a list"))
            return ()
        return tuple(self.text(x, f"{where}[{i}]") for i, x in enumerate(v))


def plan_from_dict(data: Any) -> Plan:
    """Read a plan document; a document of the wrong shape raises PlanFormatError with every problem."""
    r = _Reader()
    root = r.mapping(data, "plan")
    env = r.mapping(root.get("environment"), "environment")
    rbac = r.mapping(root.get("rbac"), "rbac")
    def stakeholder(i: int, x: dict[str, Any]) -> Stakeholder:
        at = f"stakeholders[{i}]"
        return Stakeholder(*(r.text(x.get(k), f"{at}.{k}") for k in ("name", "email", "role", "action")))

    def persona(i: int, x: dict[str, Any]) -> Persona:
        return Persona(*(r.text(x.get(k), f"rbac.personas[{i}].{k}") for k in ("name", "role")))

    def role(i: int, x: dict[str, Any]) -> PlanRole:
        at = f"rbac.roles[{i}]"
        return PlanRole(
            r.text(x.get("name"), f"{at}.name"), r.text(x.get("description"), f"{at}.description"),
            r.texts(x.get("permissions"), f"{at}.permissions"), r.texts(x.get("user_groups"), f"{at}.user_groups"),
            r.number(x.get("tier"), f"{at}.tier", None),
        )

    def group(i: int, x: dict[str, Any]) -> PlanDeviceGroup:
        at = f"rbac.device_groups[{i}]"
        return PlanDeviceGroup(
            r.text(x.get("name"), f"{at}.name"), r.number(x.get("rank"), f"{at}.rank") or 0,
            r.text(x.get("automation_level") or AutomationLevel.FULL.value, f"{at}.automation_level"),
            tuple(r.items(x.get("rules"), f"{at}.rules")), r.texts(x.get("user_groups"), f"{at}.user_groups"),
        )

    def adoption(i: int, x: dict[str, Any]) -> Adoption:
        at = f"adoption[{i}]"
        rank = x.get("rank")
        if isinstance(rank, str) and rank.strip().lower() in (NOT_APPLICABLE, "n/a", "na", ""):
            rank = None
        elif isinstance(rank, str):
            r.gaps.append(Gap(f"{at}.rank", f"{rank!r}: a whole number, or '{NOT_APPLICABLE}'"))
            rank = None
        return Adoption(r.text(x.get("component"), f"{at}.component").upper(), r.number(rank, f"{at}.rank", None))

    def incumbent(i: int, x: dict[str, Any]) -> Incumbent:
        at = f"environment.incumbents[{i}]"
        removed = x.get("removed", False)
        if not isinstance(removed, bool):
            r.gaps.append(Gap(f"{at}.removed", "must be true or false"))
            removed = False
        return Incumbent(r.text(x.get("kind"), f"{at}.kind").lower(), r.text(x.get("product"), f"{at}.product"),
                         r.text(x.get("version"), f"{at}.version"), r.text(x.get("where"), f"{at}.where"), removed)

    def ring(i: int, x: dict[str, Any]) -> RingPlan:
        at = f"rings[{i}]"
        return RingPlan(
            r.text(x.get("ring"), f"{at}.ring"), r.text(x.get("device_group"), f"{at}.device_group"),
            r.number(x.get("target_devices"), f"{at}.target_devices") or 0,
        )

    plan = Plan(
        organization=r.text(root.get("organization"), "organization"),
        stakeholders=tuple(stakeholder(i, x) for i, x in enumerate(r.items(root.get("stakeholders"), "stakeholders"))),
        environment=Environment(
            endpoint_count=r.number(env.get("endpoint_count"), "environment.endpoint_count") or 0,
            server_count=r.number(env.get("server_count"), "environment.server_count") or 0,
            management_engine=r.text(env.get("management_engine"), "environment.management_engine"),
            cdoc_distribution=r.text(env.get("cdoc_distribution"), "environment.cdoc_distribution"),
            siem=r.text(env.get("siem"), "environment.siem"),
            incumbents=tuple(incumbent(i, x) for i, x in enumerate(r.items(env.get("incumbents"),
                                                                            "environment.incumbents"))),
        ),
        mode=r.text(rbac.get("mode"), "rbac.mode"),
        personas=tuple(persona(i, x) for i, x in enumerate(r.items(rbac.get("personas"), "rbac.personas"))),
        roles=tuple(role(i, x) for i, x in enumerate(r.items(rbac.get("roles"), "rbac.roles"))),
        device_groups=tuple(
            group(i, x) for i, x in enumerate(r.items(rbac.get("device_groups"), "rbac.device_groups"))
        ),
        adoption=tuple(adoption(i, x) for i, x in enumerate(r.items(root.get("adoption"), "adoption"))),
        rings=tuple(ring(i, x) for i, x in enumerate(r.items(root.get("rings"), "rings"))),
    )
    if r.gaps:
        raise PlanFormatError(r.gaps)
    return plan


def validate(plan: Plan) -> list[Gap]:
    """Every gap in the plan, each with where it is; an empty list means the plan is complete."""
    gaps: list[Gap] = []

    def add(where: str, problem: str) -> None:
        gaps.append(Gap(where, problem))

    if not plan.organization:
        add("organization", "name the organization")
    gaps += _stakeholder_gaps(plan)
    env = plan.environment
    if env.endpoint_count <= 0:
        add("environment.endpoint_count", "give the number of endpoints")
    if env.server_count < 0:
        add("environment.server_count", "cannot be negative")
    for name in ("management_engine", "cdoc_distribution", "siem"):
        if not getattr(env, name):
            add(f"environment.{name}", "missing (write 'none' if there is none)")
    for i, inc in enumerate(env.incumbents):
        if inc.kind not in INCUMBENT_KINDS:
            add(f"environment.incumbents[{i}].kind", f"{inc.kind!r}: use antivirus or edr")
        if not inc.product:
            add(f"environment.incumbents[{i}].product", "name the product")
    gaps += _rbac_gaps(plan)
    gaps += _adoption_gaps(plan)
    groups = {g.name for g in plan.device_groups}
    for ring in Ring:
        found = [i for i, r in enumerate(plan.rings) if r.ring == ring.value]
        if not found:
            add("rings", f"the {ring.value} ring is missing")
            continue
        rp = plan.rings[found[0]]
        if rp.device_group not in groups:
            add(f"rings[{found[0]}].device_group", f"{rp.device_group!r} is not one of rbac.device_groups")
    for i, rp in enumerate(plan.rings):
        if rp.ring not in {r.value for r in Ring}:
            add(f"rings[{i}].ring", f"unknown ring {rp.ring!r}; use Evaluate, Pilot or Full")
    return gaps


def _stakeholder_gaps(plan: Plan) -> list[Gap]:
    gaps = []
    if not plan.signers:
        gaps.append(Gap("stakeholders", "nobody signs off (action SO)"))
    seen: set[str] = set()
    for i, s in enumerate(plan.stakeholders):
        at = f"stakeholders[{i}]"
        if not s.name:
            gaps.append(Gap(f"{at}.name", f"name the {s.role or 'stakeholder'}"))
        if not _EMAIL.match(s.email):
            gaps.append(Gap(f"{at}.email", f"a valid e-mail address is needed for the {s.role or 'stakeholder'}"))
        elif s.email.lower() in seen:
            gaps.append(Gap(f"{at}.email", f"{s.email} is listed twice"))
        seen.add(s.email.lower())
        if not s.role:
            gaps.append(Gap(f"{at}.role", "missing"))
        if s.action not in {a.value for a in Action}:
            gaps.append(Gap(f"{at}.action", f"{s.action!r}: use SO (sign off), R (review) or I (informed)"))
    return gaps


def _rbac_gaps(plan: Plan) -> list[Gap]:
    gaps = []

    def add(where: str, problem: str) -> None:
        gaps.append(Gap(where, problem))

    if plan.mode not in {m.value for m in PermissionsMode}:
        add("rbac.mode", f"{plan.mode!r}: use basic or rbac")
    roles = {r.name for r in plan.roles} | {ADMIN_ROLE_NAME}
    for i, p in enumerate(plan.personas):
        if not p.name:
            add(f"rbac.personas[{i}].name", "missing")
        if p.role not in roles:
            add(f"rbac.personas[{i}].role", f"{p.role!r} is not a role of the plan")
    if plan.mode == PermissionsMode.RBAC.value:
        tiers = {r.tier for r in plan.roles}
        for t in (1, 2, 3):
            if t not in tiers:
                add("rbac.roles", f"no role for CDOC tier {t}")
    names: set[str] = set()
    for i, role in enumerate(plan.roles):
        at = f"rbac.roles[{i}]"
        if not role.name:
            add(f"{at}.name", "missing")
        elif role.name in names or role.name == ADMIN_ROLE_NAME:
            add(f"{at}.name", f"{role.name!r} is used twice")
        names.add(role.name)
        if not role.permissions:
            add(f"{at}.permissions", "a role needs at least one permission")
        elif role.name == STAKEHOLDER_ROLE_NAME and set(role.permissions) != {p.value for p in STAKEHOLDER_PERMISSIONS}:
            add(f"{at}.permissions", f"the built-in {STAKEHOLDER_ROLE_NAME} role is read-only: its permissions are "
                f"fixed ({', '.join(sorted(STAKEHOLDER_PERMISSIONS))}); give other permissions to another role")
        for j, perm in enumerate(role.permissions):
            if perm not in {p.value for p in Permission}:
                add(f"{at}.permissions[{j}]", f"unknown permission {perm!r}")
        if not role.user_groups:
            add(f"{at}.user_groups", "assign the role to at least one user group")
        if role.tier is not None and role.tier not in (1, 2, 3):
            add(f"{at}.tier", "CDOC tiers are 1, 2 and 3")
    known_ugs = {ug for r in plan.roles for ug in r.user_groups}
    ranks: dict[int, str] = {}
    gnames: set[str] = set()
    for i, g in enumerate(plan.device_groups):
        at = f"rbac.device_groups[{i}]"
        if not g.name:
            add(f"{at}.name", "missing")
        elif g.name in gnames:
            add(f"{at}.name", f"{g.name!r} is used twice")
        gnames.add(g.name)
        if g.rank < 1:
            add(f"{at}.rank", "ranks start at 1")
        elif g.rank in ranks:
            add(f"{at}.rank", f"rank {g.rank} is also given to {ranks[g.rank]!r}")
        ranks[g.rank] = g.name
        if g.automation_level not in {a.value for a in AutomationLevel}:
            add(f"{at}.automation_level", f"{g.automation_level!r}: use one of {', '.join(AutomationLevel)}")
        try:
            parse_conditions(list(g.rules), f"{at}.rules")
        except GroupRuleError as e:
            add(e.where, str(e).split(": ", 1)[1])
        for j, ug in enumerate(g.user_groups):
            if ug not in known_ugs:
                add(f"{at}.user_groups[{j}]", f"{ug!r} holds no role; give it a role first")
    return gaps


def _adoption_gaps(plan: Plan) -> list[Gap]:
    """What makes the adoption list unusable; an unusual choice is advice (``adoption_warnings``), not a gap."""
    gaps = []
    listed: dict[str, int] = {}
    ranks: dict[int, str] = {}
    for i, a in enumerate(plan.adoption):
        at = f"adoption[{i}]"
        try:
            comp = Component(a.component)
        except ValueError:
            gaps.append(Gap(f"{at}.component", f"unknown component {a.component!r}; use one of "
                            f"{', '.join(Component)}"))
            continue
        if a.component in listed:
            gaps.append(Gap(f"{at}.component", f"{a.component} is listed twice"))
        listed[a.component] = i
        info = COMPONENTS[comp]
        if info.recommended_rank is None and a.rank is not None:
            gaps.append(Gap(f"{at}.rank", f"{a.component}: rank '{NOT_APPLICABLE}' — {info.why}"))
        elif a.rank is not None:
            if a.rank < 1:
                gaps.append(Gap(f"{at}.rank", "ranks start at 1"))
            elif a.rank in ranks:
                gaps.append(Gap(f"{at}.rank", f"rank {a.rank} is also given to {ranks[a.rank]}"))
            ranks.setdefault(a.rank, a.component)
    if Component.EDR.value not in listed:
        gaps.append(Gap("adoption", "EDR cannot be removed: " + COMPONENTS[Component.EDR].why + "; every other "
                        "component needs it"))
    elif plan.adoption[listed[Component.EDR.value]].rank is None:
        gaps.append(Gap(f"adoption[{listed[Component.EDR.value]}].rank", "EDR needs a rank (Microsoft: 1)"))
    return gaps


def adoption_warnings(plan: Plan) -> list[Gap]:
    """Advice on the adoption list: an order other than Microsoft's, removed components, unmet prerequisites.

    None of these blocks signing or applying; each says why the template recommends otherwise.
    """
    out: list[Gap] = []
    index = {a.component: i for i, a in enumerate(plan.adoption)}
    known = [a for a in plan.adoption if a.component in {c.value for c in Component}]
    order = [c for c in plan.adoption_order() if c in {k.value for k in Component}]
    recommended = [c.value for c in RANKED_COMPONENTS if c.value in order]
    if order != recommended:
        out.append(Gap("adoption", f"the order {' → '.join(order)} differs from Microsoft's recommended "
                       f"{' → '.join(c.value for c in RANKED_COMPONENTS)}"))
        for pos, comp in enumerate(order):
            info = COMPONENTS[Component(comp)]
            if pos < len(recommended) and recommended[pos] != comp:
                out.append(Gap(f"adoption[{index[comp]}].rank",
                               f"{comp} is recommended at rank {info.recommended_rank} because {info.why}"))
    for a in known:
        info = COMPONENTS[Component(a.component)]
        if a.rank is None and info.recommended_rank is not None:
            out.append(Gap(f"adoption[{index[a.component]}].rank", f"{a.component} has no rank, so it is never "
                           f"enabled; Microsoft recommends rank {info.recommended_rank}"))
        for alternatives in info.needs:
            present = [x for x in alternatives if x in index]
            if not present and "indicators" not in alternatives:
                out.append(Gap(f"adoption[{index[a.component]}].component",
                               f"{a.component} needs {' or '.join(alternatives)} ({info.needs_why}), which the plan "
                               "removes"))
            elif not present:
                out.append(Gap(f"adoption[{index[a.component]}].component",
                               f"{a.component} needs {' or '.join(alternatives)} ({info.needs_why}); NGP is removed, "
                               "so plan indicators for it to remediate with"))
            elif a.rank is not None and all(
                    plan.adoption[index[x]].rank is None or (plan.adoption[index[x]].rank or 0) > a.rank
                    for x in present):
                out.append(Gap(f"adoption[{index[a.component]}].rank",
                               f"{a.component} comes before {' or '.join(present)}, which it needs ({info.needs_why})"))
    for comp in plan.removed:
        info = COMPONENTS[Component(comp)]
        if info.recommended_rank is not None:
            out.append(Gap("adoption", f"{comp} ({info.title}) is removed: the plan does not use it"))
    return out


@dataclass(frozen=True)
class SignoffStatus:
    version: int
    required: tuple[str, ...]
    signed: tuple[str, ...]

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(e for e in self.required if e not in self.signed)

    @property
    def complete(self) -> bool:
        return bool(self.required) and not self.missing


def signoff_status(plan: Plan, version: int, digest: str, signoffs: list[tuple[int, str, str]]) -> SignoffStatus:
    """Sign-offs count only for the version and content they were given on; ``signoffs`` = (version, digest, email)."""
    required = tuple(s.email.lower() for s in plan.signers)
    valid = {e.lower() for v, d, e in signoffs if v == version and d == digest}
    return SignoffStatus(version, required, tuple(e for e in required if e in valid))
