"""Enabling a ring's next component through a real server: the ring's device groups get the component's policy in
the signed protection bundle, devices of other rings nothing; a group whose push fails is recorded failed."""

from __future__ import annotations

from typing import Any

from tests.integration.server.rbac_support import admin, make_user
from tests.integration.server.test_plan import document, sign_as
from tests.support import VigilServer, enroll_raw
from tests.unit.core.test_plan import complete
from vigil.asr import catalogue


def _enrol(server: VigilServer, group: str, host: str, **override: str) -> dict[str, Any]:
    token = server.onboarding_package(group=group, **override)["token"]
    r = enroll_raw(server, token, host)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _bundles(server: VigilServer, device: dict[str, Any]) -> list[dict[str, Any]]:
    """The signed ApplyProtectionPolicy commands queued for the device, as it polls them."""
    with server.client(device["credential"]) as c:
        commands = c.post("/agent/v1/actions/poll", params={"wait": 0}).json()["commands"]
    assert all(cmd["signature"] for cmd in commands)
    return [cmd["command"]["parameters"] for cmd in commands if cmd["command"]["type"] == "ApplyProtectionPolicy"]


def test_enabling_ngp_for_a_ring_changes_that_rings_antivirus_policy_only(server: VigilServer) -> None:
    make_user(server, "ada", email="ciso@acme.test")
    make_user(server, "ben", email="cdoc@acme.test")
    with admin(server) as c:
        c.post("/api/plan/init", json={"organization": "ACME"})
        assert c.put("/api/plan", json={"document": document()}).json()["gaps"] == []
        assert c.post("/api/plan/apply").json()["changes"]
    sign_as(server, "ada")
    sign_as(server, "ben")
    evaluate = _enrol(server, "Ring – Evaluate", "eval-1")
    pilot = _enrol(server, "Ring – Pilot", "pilot-1")
    assert _bundles(server, evaluate) == [] and _bundles(server, pilot) == []
    with admin(server) as c:
        # TVM comes first in the default order: built, with no device policy to push.
        r = c.post("/api/plan/components/next", json={"ring": "Evaluate"})
        assert r.status_code == 200, r.text
        tvm = r.json()
        assert (tvm["component"], tvm["state"]) == ("TVM", "on")
        assert [(g["group"], g["outcome"]) for g in tvm["groups"]] == [("Ring – Evaluate", "nothing to push")]
        # NGP: passive first, in the Evaluate ring's group only.
        ngp = c.post("/api/plan/components/next", json={"ring": "Evaluate"}).json()
        assert (ngp["component"], ngp["before"], ngp["state"]) == ("NGP", "off", "audit"), ngp
        assert ngp["groups"] == [{"group": "Ring – Evaluate", "outcome": "applied", "detail": "antivirus mode passive",
                                  "devicesUpdated": 1}]
        assert ngp["ringComponents"]["Evaluate"]["NGP"] == "audit" and ngp["ringComponents"]["Pilot"]["NGP"] == "off"
        policies = {p["rbacGroupName"]: p for p in c.get("/api/antivirus/policies").json()["value"]}
        assert policies["Ring – Evaluate"]["policy"]["mode"] == "passive"
        assert "mode" not in policies["Ring – Pilot"]["effective"] and "mode" not in policies["default"]["policy"]
        entry = c.get("/api/audit", params={"action": "plan.component_enable"}).json()["value"][0]
        assert entry["after"]["state"] == "audit" and entry["after"]["groups"][0]["outcome"] == "applied"
        assert entry["actor"] == "admin"
        assert c.get("/api/audit", params={"action": "av.policy.update"}).json()["value"][0]["actor"] == "admin"
    [bundle] = _bundles(server, evaluate)
    assert bundle["Antivirus"]["mode"] == "passive"
    assert _bundles(server, pilot) == []  # another ring's device: untouched
    with admin(server) as c:
        # Then block, still in Evaluate only; the plan shows each ring's last step per group.
        on = c.post("/api/plan/components/next", json={"ring": "Evaluate"}).json()
        assert (on["component"], on["state"], on["groups"][0]["detail"]) == ("NGP", "on", "antivirus mode block")
        st = c.get("/api/plan").json()
        assert st["ringComponentResults"]["Evaluate"]["NGP"]["groups"][0]["outcome"] == "applied"
        # ASR: every rule to Audit in the ring's group.
        asr = c.post("/api/plan/components/next", json={"ring": "Evaluate"}).json()
        assert (asr["component"], asr["state"]) == ("ASR", "audit")
        modes = c.get("/api/asr/policies/Ring – Evaluate").json()
    assert asr["groups"][0]["detail"] == f"{len(catalogue())} ASR rule(s) to Audit", asr
    assert modes["modes"] == {r.guid: 2 for r in catalogue()}  # Defender's number for Audit
    [bundle, asr_bundle] = _bundles(server, evaluate)
    assert bundle["Antivirus"]["mode"] == "block" and asr_bundle["Antivirus"]["mode"] == "block"
    assert bundle["Group"] is None and asr_bundle["Group"]["modes"] == {r.guid: 2 for r in catalogue()}
    assert _bundles(server, pilot) == []


def test_a_push_that_fails_is_recorded_failed_with_its_error_and_retried(server: VigilServer) -> None:
    d = complete()
    d["adoption"] = [a for a in d["adoption"] if a["component"] != "TVM"]  # NGP first
    with admin(server) as c:
        c.post("/api/plan/init", json={"organization": "ACME"})
        assert c.put("/api/plan", json={"document": document(adoption=d["adoption"])}).json()["gaps"] == []
        # Not applied: the Evaluate ring's device group does not exist yet.
        r = c.post("/api/plan/components/next", json={"ring": "Evaluate"})
        assert r.status_code == 200, r.text
        failed = r.json()
        assert (failed["component"], failed["state"]) == ("NGP", "failed")
        assert failed["groups"] == [{"group": "Ring – Evaluate", "outcome": "failed",
                                     "detail": "no device group named 'Ring – Evaluate'", "devicesUpdated": 0}]
        assert c.get("/api/plan").json()["ringComponents"]["Evaluate"]["NGP"] == "failed"
        entry = c.get("/api/audit", params={"action": "plan.component_enable"}).json()["value"][0]
        assert entry["after"]["state"] == "failed"
        assert entry["after"]["groups"][0]["detail"] == "no device group named 'Ring – Evaluate'"
        # Beyond Evaluate before sign-off: refused, nothing recorded.
        r = c.post("/api/plan/components/next", json={"ring": "Pilot"})
        assert r.status_code == 409 and r.json()["error"] == "signoff_required", r.text
        # Once the group exists, enabling again retries from passive.
        assert c.post("/api/plan/apply").json()["changes"]
        again = c.post("/api/plan/components/next", json={"ring": "Evaluate"}).json()
        assert (again["component"], again["before"], again["state"]) == ("NGP", "failed", "audit"), again
        assert again["groups"][0]["outcome"] == "applied"


def test_ngp_stays_passive_while_the_plan_lists_an_incumbent_antivirus(server: VigilServer) -> None:
    d = complete()
    d["adoption"] = [a for a in d["adoption"] if a["component"] != "TVM"]
    env = {**d["environment"], "incumbents": [{"kind": "antivirus", "product": "ClamAV", "where": "all servers"}]}
    make_user(server, "reader", role="read-only")
    with admin(server) as c:
        c.post("/api/plan/init", json={"organization": "ACME"})
        c.put("/api/plan", json={"document": document(adoption=d["adoption"], environment=env)})
        c.post("/api/plan/apply")
        assert c.post("/api/plan/components/next", json={"ring": "Evaluate"}).json()["state"] == "audit"
        r = c.post("/api/plan/components/next", json={"ring": "Evaluate"})
        assert r.status_code == 409 and r.json()["error"] == "plan_rejected"
        assert "NGP stays passive while the plan lists an incumbent antivirus" in r.json()["detail"]
        policies = {p["rbacGroupName"]: p for p in c.get("/api/antivirus/policies").json()["value"]}
        assert policies["Ring – Evaluate"]["policy"]["mode"] == "passive"
