"""The deployment plan over the API: gating of production onboarding, sign-off invalidation, idempotent apply."""

from __future__ import annotations

from typing import Any

import yaml

from tests.integration.server.rbac_support import PASSWORD, admin, make_user, token_of
from tests.support import VigilServer
from tests.unit.core.test_plan import complete


def document(**changes: Any) -> str:
    d = complete()
    d.update(changes)
    return yaml.safe_dump(d, sort_keys=False, allow_unicode=True)


def sign_as(server: VigilServer, name: str) -> dict[str, Any]:
    with server.client(token_of(server, name)) as c:
        r = c.post("/api/plan/signoff")
        assert r.status_code == 200, r.text
        return dict(r.json())


def test_gate_blocks_production_onboarding_until_every_so_stakeholder_signs(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    make_user(server, "ada", email="ciso@acme.test")
    make_user(server, "ben", email="cdoc@acme.test")
    make_user(server, "cy", email="arch@acme.test")
    with admin(server) as c:
        # No plan: an evaluation install is not gated.
        assert c.post("/api/onboarding/packages", json={}).status_code == 200
        assert c.post("/api/plan/init", json={"organization": "ACME"}).json()["gateOpen"] is False
        r = c.post("/api/onboarding/packages", json={})
        assert r.status_code == 409 and r.json()["error"] == "signoff_required"
        with server.client(token_of(server, "ada")) as ada:
            r = ada.post("/api/plan/signoff")  # an incomplete plan cannot be signed
            assert r.status_code == 409 and "gap" in r.json()["detail"]
        st = c.put("/api/plan", json={"document": document()}).json()
        assert st["version"] == 2 and st["gaps"] == []
        assert c.post("/api/plan/apply").json()["changes"]
        assert c.post("/api/onboarding/packages", json={"group": "Ring – Evaluate"}).status_code == 200
        assert c.post("/api/onboarding/packages", json={"group": "Ring – Full"}).status_code == 409
    with server.client(token_of(server, "cy")) as cy:
        r = cy.post("/api/plan/signoff")  # a reviewer (R) does not sign off
        assert r.status_code == 409 and r.json()["field"] == "email"
    assert sign_as(server, "ada")["gateOpen"] is False
    st = sign_as(server, "ben")
    assert st["gateOpen"] is True and st["phase"] == "Onboard"
    with admin(server) as c:
        assert c.post("/api/onboarding/packages", json={"group": "Ring – Full"}).status_code == 200
        # Any change voids the sign-offs and closes the gate again.
        st = c.put("/api/plan", json={"document": document(organization="ACME Corp")}).json()
        assert st["version"] == 3 and st["signoff"]["signed"] == [] and st["gateOpen"] is False
        assert c.post("/api/onboarding/packages", json={"group": "Ring – Full"}).status_code == 409
        # An unchanged document is not a new version.
        assert c.put("/api/plan", json={"document": document(organization="ACME Corp")}).json()["newVersion"] is False
        md = c.get("/api/plan/export", params={"format": "md"}).text
        assert "# Deployment plan — ACME Corp" in md
        assert "| Ada CISO | CISO | ciso@acme.test | Sign off | pending |" in md


def test_an_administrator_override_needs_a_reason_and_is_audited(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    make_user(server, "ops", role="read-only")
    with admin(server) as c:
        c.post("/api/plan/init", json={"organization": "ACME"})
        r = c.post("/api/onboarding/packages", json={"override_reason": "   "})
        assert r.status_code == 409
        r = c.post("/api/onboarding/packages", json={"override_reason": "Emergency rollout after incident 42"})
        assert r.status_code == 200
        entry = c.get("/api/audit", params={"action": "onboarding.gate_override"}).json()["value"][0]
        assert entry["reason"] == "Emergency rollout after incident 42" and entry["actor"] == "admin"
        assert entry["after"]["plan_version"] == 1
        # The override is shown on the plan, with who, when, the plan version and the reason.
        shown = c.get("/api/plan").json()["overrides"]
        assert [(o["action"], o["actor"], o["planVersion"], o["reason"]) for o in shown] == [
            ("onboarding.gate_override", "admin", 1, "Emergency rollout after incident 42")]
        md = c.get("/api/plan/export", params={"format": "md"}).text
        assert "## Emergency overrides" in md and "| admin | Onboarding before sign-off |" in md
        assert "Emergency rollout after incident 42" in c.get("/api/plan/export", params={"format": "html"}).text
        actions = {e["action"] for e in c.get("/api/audit").json()["value"]}
        assert {"plan.edit", "onboarding.package", "user.create", "user.sign_in"} <= actions
    with server.client() as c:
        assert c.post("/api/auth/login", json={"username": "ops", "password": PASSWORD}).status_code == 200


def test_apply_is_idempotent_and_rings_need_criteria_or_an_override(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    make_user(server, "ada", email="ciso@acme.test")
    make_user(server, "ben", email="cdoc@acme.test")
    with admin(server) as c:
        c.post("/api/plan/init", json={"organization": "ACME"})
        c.put("/api/plan", json={"document": document()})
        diff = c.get("/api/plan/diff").json()["changes"]
        assert "switch permissions to RBAC mode (cannot be undone)" in diff and "+ role 'CDOC Tier 1'" in diff
        assert c.post("/api/plan/apply").json()["changes"] == diff
        assert c.post("/api/plan/apply").json()["changes"] == []
        assert c.get("/api/plan/diff").json()["changes"] == []
        groups = {g["name"]: g for g in c.get("/api/machinegroups").json()["value"]}
        evaluate = groups["Ring – Evaluate"]
        assert evaluate["rank"] == 1 and evaluate["automationLevel"] == "SemiRemediation"
        assert "cdoc-tier1" in groups["Ring – Full"]["userGroups"]
        assert c.get("/api/rbac").json()["mode"] == "rbac"
        r = c.post("/api/rings/promote", json={})
        assert r.status_code == 409  # the plan is not signed yet
    sign_as(server, "ada")
    sign_as(server, "ben")
    with admin(server) as c:
        r = c.post("/api/rings/promote", json={})
        assert r.status_code == 409 and "Devices reporting" in r.json()["detail"]
        r = c.post("/api/rings/promote", json={"override_reason": "Lab ring validated by hand"})
        assert r.json()["ring"] == "Pilot"
        assert c.get("/api/plan").json()["ring"] == "Pilot"
        assert c.get("/api/audit", params={"action": "ring.promote_override"}).json()["value"][0]["reason"]
        assert ("ring.promote_override", "Lab ring validated by hand") in {
            (o["action"], o["reason"]) for o in c.get("/api/plan").json()["overrides"]}
        # Each ring has its own component state; TVM comes next, and a ring follows the one before it.
        st = c.get("/api/plan").json()
        assert st["ringComponents"]["Pilot"]["EDR"] == "on" and st["ringComponents"]["Pilot"]["TVM"] == "off"
        assert st["componentsEnabled"] == ["EDR"]
        r = c.post("/api/plan/components/next", json={"ring": "Pilot"})
        assert r.status_code == 409 and r.json()["error"] == "plan_rejected"
        assert r.json()["detail"] == "TVM must reach on in the Evaluate ring first" and r.json()["field"] == "ring"
        assert c.post("/api/plan/components/next", json={"ring": "Nowhere"}).status_code == 422
