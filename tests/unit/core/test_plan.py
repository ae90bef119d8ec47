"""The deployment plan: the seed, every kind of gap with its location, and sign-off invalidation."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from vigil.core.plan import (
    Plan,
    PlanFormatError,
    adoption_warnings,
    default_plan,
    plan_digest,
    plan_from_dict,
    plan_to_dict,
    signoff_status,
    validate,
)


def complete() -> dict[str, Any]:
    d = plan_to_dict(default_plan("ACME"))
    people = [("Ada CISO", "ciso@acme.test"), ("Ben CDOC", "cdoc@acme.test"), ("Cy Arch", "arch@acme.test"),
              ("Di Work", "work@acme.test"), ("Ed Analyst", "analyst@acme.test")]
    for s, (name, email) in zip(d["stakeholders"], people, strict=True):
        s.update(name=name, email=email)
    d["environment"] = {"endpoint_count": 1200, "server_count": 300, "management_engine": "Ansible",
                        "cdoc_distribution": "one global CDOC", "siem": "Splunk"}
    return d


def gaps_of(d: dict[str, Any]) -> dict[str, str]:
    return {g.where: g.problem for g in validate(plan_from_dict(d))}


def test_the_seed_has_defenders_defaults_and_round_trips() -> None:
    plan = default_plan()
    assert [(s.role, s.action) for s in plan.stakeholders] == [
        ("CISO", "SO"), ("Head of CDOC", "SO"), ("Security Architect", "R"), ("Workplace Architect", "R"),
        ("Security Analyst", "I")]
    assert plan.adoption_order() == ["EDR", "TVM", "NGP", "ASR", "AIR"]
    assert {a.component for a in plan.adoption if a.rank is None} == {"MTE"}
    assert plan_to_dict(plan)["adoption"][-1] == {"component": "MTE", "rank": "not applicable"}
    assert adoption_warnings(plan) == []
    assert {r.tier for r in plan.roles} >= {1, 2, 3}
    # The Business Owner gets the built-in read-only Stakeholder role, not an analyst tier.
    assert {x.name: x.role for x in plan.personas}["Business Owner"] == "Stakeholder"
    stakeholder = next(r for r in plan.roles if r.name == "Stakeholder")
    assert stakeholder.permissions == ("View deployment plan and reports",)
    assert plan_from_dict(plan_to_dict(plan)) == plan


def test_a_complete_plan_has_no_gaps() -> None:
    assert gaps_of(complete()) == {}


def edit(path: str, value: Any) -> dict[str, Any]:
    d = complete()
    keys = path.split(".")
    node: Any = d
    for k in keys[:-1]:
        node = node[int(k)] if k.isdigit() else node[k]
    last = keys[-1]
    if value is _DELETE:
        del node[int(last) if last.isdigit() else last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return d


_DELETE = object()


@pytest.mark.parametrize(("path", "value", "where", "says"), [
    ("organization", "", "organization", "name the organization"),
    ("stakeholders.0.name", "", "stakeholders[0].name", "CISO"),
    ("stakeholders.1.email", "not-an-address", "stakeholders[1].email", "valid e-mail"),
    ("stakeholders.2.email", "ciso@acme.test", "stakeholders[2].email", "listed twice"),
    ("stakeholders.3.action", "X", "stakeholders[3].action", "SO (sign off)"),
    ("environment.endpoint_count", 0, "environment.endpoint_count", "number of endpoints"),
    ("environment.siem", "", "environment.siem", "write 'none'"),
    ("environment.server_count", -1, "environment.server_count", "negative"),
    ("rbac.mode", "chaos", "rbac.mode", "basic or rbac"),
    ("rbac.personas.0.role", "Ghost role", "rbac.personas[0].role", "not a role"),
    ("rbac.roles.0.permissions", ["Root access"], "rbac.roles[0].permissions[0]", "unknown permission"),
    ("rbac.roles.1.user_groups", [], "rbac.roles[1].user_groups", "at least one user group"),
    ("rbac.roles.4.permissions", ["Alerts investigation"], "rbac.roles[4].permissions", "built-in Stakeholder"),
    ("rbac.roles.2.tier", 7, "rbac.roles[2].tier", "1, 2 and 3"),
    ("rbac.device_groups.1.rank", 1, "rbac.device_groups[1].rank", "also given to"),
    ("rbac.device_groups.0.automation_level", "Yolo", "rbac.device_groups[0].automation_level", "use one of"),
    ("rbac.device_groups.0.rules", [{"property": "colour", "value": "x"}], "rbac.device_groups[0].rules[0].property",
     "use one of"),
    ("rbac.device_groups.0.user_groups", ["strangers"], "rbac.device_groups[0].user_groups[0]", "holds no role"),
    ("adoption.1.rank", 3, "adoption[2].rank", "also given to TVM"),
    ("adoption.5.rank", 6, "adoption[5].rank", "not applicable"),
    ("adoption.0", {"component": "XDR", "rank": 1}, "adoption", "EDR cannot be removed"),
    ("adoption.1", {"component": "XDR", "rank": 2}, "adoption[1].component", "unknown component"),
    ("rings.0.device_group", "Nowhere", "rings[0].device_group", "not one of rbac.device_groups"),
    ("rings.2", _DELETE, "rings", "Full ring is missing"),
])
def test_validate_reports_each_kind_of_gap_where_it_is(path: str, value: Any, where: str, says: str) -> None:
    gaps = gaps_of(edit(path, value))
    assert where in gaps, gaps
    assert says in gaps[where]


def test_components_may_be_removed_and_reordered_with_advice_but_edr_stays() -> None:
    d = complete()
    d["adoption"] = [a for a in d["adoption"] if a["component"] != "NGP"]
    ranks = {"EDR": 1, "ASR": 2, "TVM": 3, "AIR": 4}
    for a in d["adoption"]:
        a["rank"] = ranks.get(a["component"], a["rank"])
    plan = plan_from_dict(d)
    assert validate(plan) == []  # valid: the site chooses
    assert plan.removed == ["NGP"] and plan.adoption_order() == ["EDR", "ASR", "TVM", "AIR"]
    warnings = {g.where: g.problem for g in adoption_warnings(plan)}
    text = " | ".join(g.problem for g in adoption_warnings(plan))
    assert "differs from Microsoft's recommended EDR → TVM → NGP → ASR → AIR" in text
    assert "TVM is recommended at rank 2 because" in warnings["adoption[1].rank"]
    assert "ASR needs NGP" in warnings["adoption[2].component"]  # a prerequisite the plan removes
    assert "AIR needs NGP or indicators" in warnings["adoption[3].component"]
    assert "NGP (Next-generation protection (antivirus)) is removed" in text

    d["adoption"] = [a for a in d["adoption"] if a["component"] != "EDR"]
    gaps = gaps_of(d)
    assert "EDR cannot be removed" in gaps["adoption"] and "every other component needs it" in gaps["adoption"]


def test_a_component_ranked_before_what_it_needs_is_reported() -> None:
    d = complete()
    for a in d["adoption"]:
        a["rank"] = {"NGP": 4, "ASR": 3}.get(a["component"], a["rank"])
    warnings = {g.where: g.problem for g in adoption_warnings(plan_from_dict(d))}
    assert "ASR comes before NGP, which it needs" in warnings["adoption[3].rank"]


def test_missing_tiers_and_signers_are_gaps() -> None:
    d = complete()
    d["rbac"]["roles"] = [r for r in d["rbac"]["roles"] if r.get("tier") != 2]
    for s in d["stakeholders"]:
        s["action"] = "R"
    gaps = [str(g) for g in validate(plan_from_dict(d))]
    assert "rbac.roles: no role for CDOC tier 2" in gaps
    assert "stakeholders: nobody signs off (action SO)" in gaps


def test_a_document_of_the_wrong_shape_is_reported_whole() -> None:
    with pytest.raises(PlanFormatError) as e:
        plan_from_dict({"stakeholders": "everyone", "environment": {"endpoint_count": "many"}})
    assert {g.where for g in e.value.gaps} == {"stakeholders", "environment.endpoint_count"}
    with pytest.raises(PlanFormatError, match=r"adoption\[1\]\.rank: 'soon': a whole number, or 'not applicable'"):
        plan_from_dict(edit("adoption.1.rank", "soon"))


def test_signoffs_count_only_for_the_version_and_content_signed() -> None:
    plan = plan_from_dict(complete())
    digest = plan_digest(plan)
    both = [(1, digest, "ciso@acme.test"), (1, digest, "CDOC@acme.test")]
    assert signoff_status(plan, 1, digest, both).complete
    assert signoff_status(plan, 1, digest, both[:1]).missing == ("cdoc@acme.test",)
    changed: Plan = dataclasses.replace(plan, organization="ACME Corp")
    new_digest = plan_digest(changed)
    assert new_digest != digest
    after = signoff_status(changed, 2, new_digest, both)
    assert not after.complete and after.signed == ()
