"""The deployment plan: the seed, every kind of gap with its location, and sign-off invalidation."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from vigil.core.plan import (
    Plan,
    PlanFormatError,
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
    assert plan.adoption_order() == ["EDR", "TVM", "NGP", "ASR"]
    assert {a.component for a in plan.adoption if a.rank is None} == {"AIR", "MTE"}
    assert {r.tier for r in plan.roles} >= {1, 2, 3}
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
    ("rbac.roles.2.tier", 7, "rbac.roles[2].tier", "1, 2 and 3"),
    ("rbac.device_groups.1.rank", 1, "rbac.device_groups[1].rank", "also given to"),
    ("rbac.device_groups.0.automation_level", "Yolo", "rbac.device_groups[0].automation_level", "use one of"),
    ("rbac.device_groups.0.rules", [{"property": "colour", "value": "x"}], "rbac.device_groups[0].rules[0].property",
     "use one of"),
    ("rbac.device_groups.0.user_groups", ["strangers"], "rbac.device_groups[0].user_groups[0]", "holds no role"),
    ("adoption.1.rank", 3, "adoption[1].rank", "rank 2"),
    ("adoption.4.rank", 5, "adoption[4].rank", "not ranked"),
    ("adoption.0", {"component": "XDR", "rank": 1}, "adoption", "EDR is missing"),
    ("rings.0.device_group", "Nowhere", "rings[0].device_group", "not one of rbac.device_groups"),
    ("rings.2", _DELETE, "rings", "Full ring is missing"),
])
def test_validate_reports_each_kind_of_gap_where_it_is(path: str, value: Any, where: str, says: str) -> None:
    gaps = gaps_of(edit(path, value))
    assert where in gaps, gaps
    assert says in gaps[where]


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
