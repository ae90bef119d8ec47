"""ASR policies over the API on a real server: a policy change reaches the enrolled device as a signed command
carrying its bundle, and a device enrolling later gets the current one; modes switch one rule at a time; read-only
users are refused."""

from __future__ import annotations

from tests.integration.server.rbac_support import admin, make_user, token_of
from tests.support import VigilServer, enroll_raw
from vigil.asr import AsrMode, bundle, find

TMP = find("ExecFromTempOrRemovable").guid


def _commands(srv: VigilServer, credential: str) -> list[dict[str, object]]:
    with srv.client(credential) as c:
        r = c.post("/agent/v1/actions/poll", params={"wait": 0})
        assert r.status_code == 200, r.text
        return list(r.json()["commands"])


def test_policy_api_and_delivery(sqlite_server: VigilServer) -> None:
    srv = sqlite_server
    dev = dict(enroll_raw(srv, srv.onboarding_package()["token"], "asr-policy-host").json())
    with admin(srv) as c:
        r = c.put("/api/asr/policies/default", json={"modes": {"ExecFromTempOrRemovable": "Audit"},
                                                      "exclusions": [{"pattern": "/opt/ci/*"}]})
        assert r.status_code == 200, r.text
        assert (r.json()["version"], r.json()["modes"], r.json()["devicesUpdated"]) == (1, {TMP: 2}, 1)
        r = c.put(f"/api/asr/policies/default/rules/{TMP}", json={"mode": "Block"})
        assert r.status_code == 200 and r.json()["version"] == 2 and r.json()["exclusions"]
        bad = c.put(f"/api/asr/policies/default/rules/{TMP}", json={"mode": 5})
        assert bad.status_code == 422 and bad.json()["field"] == "mode"
        assert c.put("/api/asr/policies/No such group", json={}).status_code == 404
        listed = c.get("/api/asr/policies").json()["value"]
        assert [(p["rbacGroupName"], p["version"]) for p in listed] == [("default", 2)]
        assert "asr.policy.update" in [e["action"] for e in c.get("/api/audit", params={"$top": 20}).json()["value"]]

    commands = _commands(srv, dev["credential"])
    assert [cmd["command"]["type"] for cmd in commands] == ["ApplyProtectionPolicy"] * 2
    assert all(cmd["signature"] for cmd in commands)
    latest = bundle.from_json(commands[-1]["command"]["parameters"])  # type: ignore[index]
    assert latest.policies.mode(TMP, latest.group_id) is AsrMode.BLOCK

    # A device enrolling after the change gets the bundle in force at once, not only at the next change.
    late = dict(enroll_raw(srv, srv.onboarding_package()["token"], "asr-late-host").json())
    first = _commands(srv, late["credential"])
    assert [cmd["command"]["type"] for cmd in first] == ["ApplyProtectionPolicy"]
    current = bundle.from_json(first[0]["command"]["parameters"])  # type: ignore[arg-type]
    assert current.policies.mode(TMP, current.group_id) is AsrMode.BLOCK

    make_user(srv, "reader", role="read-only")
    with srv.client(token_of(srv, "reader")) as ro:
        assert ro.get("/api/asr/policies/default").json()["modes"] == {TMP: 1}
        assert ro.put("/api/asr/policies/default", json={}).status_code == 403
