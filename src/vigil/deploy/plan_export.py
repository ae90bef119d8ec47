"""Renders the deployment plan as Markdown and as a printable HTML page for sign-off."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader

from vigil.core.plan import Action, Plan
from vigil.core.rbac import ADMIN_ROLE_NAME, STAKEHOLDER_ROLE_NAME
from vigil.deploy.plan import PlanState, component_rows

_ACTIONS = {Action.SIGN_OFF.value: "Sign off", Action.REVIEW.value: "Review", Action.INFORMED.value: "Informed"}


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def persona_permissions(p: Plan, role: str) -> str:
    """What a persona's suggested role allows, in words."""
    if role == ADMIN_ROLE_NAME:
        return "every permission on every device group"
    found = next((r for r in p.roles if r.name == role), None)
    perms = ", ".join(found.permissions) if found else "not a role of the plan"
    return perms + (" — built-in, read-only, no device data" if role == STAKEHOLDER_ROLE_NAME else "")


def plan_markdown(st: PlanState) -> str:
    p = st.plan
    signed = {s.email: s for s in st.signatures if s.version == st.version and s.digest == st.digest}
    out = [f"# Deployment plan — {p.organization}", "",
           f"Version {st.version} · content digest `{st.digest[:16]}` · phase **{st.phase}** · "
           f"ring **{st.ring.value}**",
           "", "## Stakeholders", "", "| Name | Role | E-mail | Action | Signed |", "|---|---|---|---|---|"]
    for s in p.stakeholders:
        sig = signed.get(s.email.lower())
        mark = f"{sig.signed_at:%Y-%m-%d %H:%M} UTC by {sig.signed_by}" if sig else ""
        if not sig and s.action == Action.SIGN_OFF.value:
            mark = "pending"
        action = _ACTIONS.get(s.action, s.action)
        out.append(f"| {_cell(s.name)} | {_cell(s.role)} | {_cell(s.email)} | {action} | {mark} |")
    e = p.environment
    out += ["", "## Environment", "", f"- Endpoints: {e.endpoint_count}", f"- Servers: {e.server_count}",
            f"- Management engine: {e.management_engine}", f"- CDOC distribution: {e.cdoc_distribution}",
            f"- SIEM: {e.siem}"]
    out += [f"- Incumbent {i.kind}: {_cell(i.product)} {_cell(i.version)} on {_cell(i.where or 'unspecified devices')}"
            + (" (removed)" if i.removed else "") for i in e.incumbents]
    out += ["", f"## Permissions ({p.mode} mode)", "", "### Personas", ""]
    out += [f"- {_cell(x.name)} → {_cell(x.role)} ({_cell(persona_permissions(p, x.role))})" for x in p.personas]
    out += ["", "### Roles", "", "| Role | Tier | Permissions | User groups |", "|---|---|---|---|"]
    out += [f"| {_cell(r.name)} | {r.tier or ''} | {_cell(', '.join(r.permissions))} | "
            f"{_cell(', '.join(r.user_groups))} |" for r in p.roles]
    out += ["", "### Device groups", "", "| Rank | Group | Rule | Automation | User groups |", "|---|---|---|---|---|"]
    for g in sorted(p.device_groups, key=lambda g: g.rank):
        rule = " and ".join(f"{c.get('property')} {c.get('operator', 'equals')} {c.get('value')}" for c in g.rules)
        out.append(f"| {g.rank} | {_cell(g.name)} | {_cell(rule)} | {g.automation_level} | "
                   f"{_cell(', '.join(g.user_groups))} |")
    out += ["", "## Adoption order", "", f"Order: {' → '.join(p.adoption_order())}", "",
            "| Component | Rank | Recommended | Needs | Status |", "|---|---|---|---|---|"]
    out += [f"| {c['component']} — {_cell(c['title'])} | {c['rank'] if c['used'] else 'removed'} | "
            f"{c['recommendedRank']} | {_cell(', '.join(c['needs']))} | {c['status']} |" for c in component_rows(p)]
    if st.warnings:
        out += ["", "Advice (does not block sign-off):", ""] + [f"- `{g.where}`: {g.problem}" for g in st.warnings]
    out += ["", "## Rings", "", "| Ring | Device group | Target devices |", "|---|---|---|"]
    out += [f"| {r.ring} | {_cell(r.device_group)} | {r.target_devices or 'all remaining'} |" for r in p.rings]
    if st.overrides:
        out += ["", "## Emergency overrides", "", "| When | Who | Override | Target | Plan version | Reason |",
                "|---|---|---|---|---|---|"]
        out += [f"| {o.at:%Y-%m-%d %H:%M} UTC | {_cell(o.actor)} | {o.label} | {_cell(o.target)} | "
                f"{o.plan_version or ''} | {_cell(o.reason)} |" for o in st.overrides]
    if st.gaps:
        out += ["", "## Open gaps", ""] + [f"- `{g.where}`: {g.problem}" for g in st.gaps]
    return "\n".join(out) + "\n"


_HTML = Environment(loader=FileSystemLoader(Path(__file__).with_name("templates")), autoescape=True).get_template(
    "plan.html"
)


def plan_html(st: PlanState) -> str:
    signed = {s.email: s for s in st.signatures if s.version == st.version and s.digest == st.digest}
    return _HTML.render(st=st, p=st.plan, signed=signed, actions=_ACTIONS, components=component_rows(st.plan),
                        persona_permissions=persona_permissions)
