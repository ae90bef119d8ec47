"""A device that renames and re-tags itself stays in its group, scope and policy until an administrator accepts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from tests.integration.server.rbac_support import PASSWORD, admin, make_user, token_of
from tests.support import VigilServer, enroll_raw, post_batch

TIER1 = ["View data – Security operations", "Alerts investigation"]


def _info(device_id: str, seq: int, name: str, tags: list[str]) -> dict[str, Any]:
    return {"table": "DeviceInfo", "Timestamp": f"2026-11-28T09:00:{seq:02d}Z", "DeviceId": device_id,
            "DeviceName": name, "ActionType": "DeviceInfo", "ReportId": seq, "OSPlatform": "Linux",
            "DeviceTags": tags}


def _group(c: httpx.Client, did: str) -> str:
    return str(c.get(f"/api/machines/{did}").json()["rbacGroupName"])


def _set_up(server: VigilServer) -> dict[str, str]:
    with admin(server) as c:
        for g in ("a", "b"):
            r = c.put(f"/api/roles/tier1-{g}", json={"permissions": TIER1, "userGroups": [f"ug-{g}"]})
            assert r.status_code == 200, r.text
        r = c.put("/api/machinegroups/Group A", json={
            "rules": [{"property": "name", "operator": "startsWith", "value": "a-"}], "userGroups": ["ug-a"]})
        assert r.status_code == 200, r.text
        assert r.json()["trustReportedIdentity"] is False  # the documented default
        # Group B is ranked first: its tag rule would claim the device the moment the tag counted.
        r = c.put("/api/machinegroups/Group B", json={
            "rules": [{"property": "tag", "operator": "equals", "value": "ring-b"}], "userGroups": ["ug-b"]})
        assert r.status_code == 200, r.text
        assert c.post("/api/machinegroups/ranks", json={"order": ["Group B", "Group A"]}).status_code == 200
        assert c.put("/api/machinegroups/Ungrouped devices (default)",
                     json={"userGroups": ["ug-admins"]}).status_code == 200
        assert c.post("/api/rbac/mode", json={"mode": "rbac"}).status_code == 200
    make_user(server, "ann", groups=("ug-a",))
    make_user(server, "bob", groups=("ug-b",))
    dev = enroll_raw(server, server.onboarding_package()["token"], "a-web-01.corp.test").json()
    did = dev["device_id"]
    assert post_batch(server, dev["credential"], [_info(did, 1, "a-web-01.corp.test", ["web"])]).status_code == 200
    with admin(server) as c:
        assert _group(c, did) == "Group A"
        assert c.get(f"/api/machines/{did}/identityChanges").json()["value"] == []  # the first report is its identity
    return {"did": did, "credential": dev["credential"], "ann": token_of(server, "ann"), "bob": token_of(server, "bob")}


def test_a_renamed_retagged_device_stays_in_its_group_until_an_admin_accepts(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    s = _set_up(server)
    did = s["did"]
    # The compromised agent claims another name and the tag Group B's rule matches, and keeps flapping.
    for seq, (name, tags) in enumerate([("b-db-09.evil.test", ["ring-b"]), ("b-db-09.evil.test", ["ring-b"]),
                                        ("b-db-10.evil.test", ["ring-b", "web"])], start=2):
        assert post_batch(server, s["credential"], [_info(did, seq, name, tags)]).status_code == 200
    with admin(server) as c:
        m = c.get(f"/api/machines/{did}").json()
        assert (m["rbacGroupName"], m["computerDnsName"], m["machineTags"]) == ("Group A", "a-web-01.corp.test",
                                                                                 ["web"])
        changes = c.get(f"/api/machines/{did}/identityChanges").json()["value"]
        assert len(changes) == 1
        ch = changes[0]
        assert ch["status"] == "Pending" and ch["reports"] == 3 and ch["revision"] == 2
        assert ch["before"] == {"name": "a-web-01.corp.test", "domain": "corp.test", "osPlatform": "Linux",
                                "tags": ["web"]}
        assert ch["after"]["name"] == "b-db-10.evil.test" and ch["after"]["tags"] == ["ring-b", "web"]
        assert ch["changed"] == ["name", "domain", "tags"]
        audited = c.get("/api/audit", params={"action": "device.identity_reported"}).json()["value"]
        assert [(e["actor"], e["target_id"]) for e in audited] == [(f"device:{did}", did)]  # one, not one per flap
        alerts = [a for a in c.get("/api/alerts", params={"machineId": did}).json()["value"]
                  if a["title"] == "Device reported a changed identity"]
        assert len(alerts) == 1 and alerts[0]["severity"] == "Low"
    # Scope follows the accepted group: Group A's analyst sees the device, Group B's does not.
    with server.client(s["ann"]) as c:
        assert c.get(f"/api/machines/{did}").status_code == 200
        assert c.get(f"/api/machines/{did}/identityChanges").json()["value"][0]["id"] == ch["id"]
        # A Tier-1 analyst cannot accept the change the device asks for.
        r = c.post(f"/api/machines/{did}/identityChanges/{ch['id']}/accept", json={"Revision": 2})
        assert r.status_code == 403, r.text
    with server.client(s["bob"]) as c:
        assert c.get(f"/api/machines/{did}").status_code == 404
        assert c.get(f"/api/machines/{did}/identityChanges").status_code == 404
        assert c.post(f"/api/machines/{did}/identityChanges/{ch['id']}/accept",
                      json={"Revision": 2}).status_code == 403
    with admin(server) as c:
        # The revision the admin saw is stale once the device reports again: nothing is applied.
        r = c.post(f"/api/machines/{did}/identityChanges/{ch['id']}/accept", json={"Revision": 1})
        assert r.status_code == 409 and "revision" in r.text.lower()
        assert _group(c, did) == "Group A"
        r = c.post(f"/api/machines/{did}/identityChanges/{ch['id']}/accept",
                   json={"Revision": 2, "Comment": "host was re-purposed"})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "Accepted" and r.json()["decidedBy"] == "admin"
        m = c.get(f"/api/machines/{did}").json()
        assert (m["rbacGroupName"], m["computerDnsName"]) == ("Group B", "b-db-10.evil.test")
        accepted = c.get("/api/audit", params={"action": "device.identity_accept"}).json()["value"]
        assert len(accepted) == 1 and accepted[0]["actor"] == "admin"
        assert c.get("/api/audit/verify").json()["ok"] is True
        r = c.post(f"/api/machines/{did}/identityChanges/{ch['id']}/reject", json={"Revision": 2})
        assert r.status_code == 409  # already decided
    with server.client(s["ann"]) as c:
        assert c.get(f"/api/machines/{did}").status_code == 404
    with server.client(s["bob"]) as c:
        assert c.get(f"/api/machines/{did}").status_code == 200


def test_a_rejected_claim_repeated_raises_nothing_new(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    s = _set_up(server)
    did = s["did"]
    assert post_batch(server, s["credential"], [_info(did, 2, "a-web-01.corp.test", ["ring-b"])]).status_code == 200
    with admin(server) as c:
        ch = c.get(f"/api/machines/{did}/identityChanges").json()["value"][0]
        r = c.post(f"/api/machines/{did}/identityChanges/{ch['id']}/reject", json={"Revision": ch["revision"]})
        assert r.status_code == 200 and r.json()["status"] == "Rejected"
    assert post_batch(server, s["credential"], [_info(did, 3, "a-web-01.corp.test", ["ring-b"])]).status_code == 200
    with admin(server) as c:
        assert _group(c, did) == "Group A"
        changes = c.get(f"/api/machines/{did}/identityChanges").json()["value"]
        assert [x["status"] for x in changes] == ["Rejected"] and changes[0]["reports"] == 2
        assert len(c.get("/api/audit", params={"action": "device.identity_reported"}).json()["value"]) == 1
        assert len(c.get("/api/audit", params={"action": "device.identity_reject"}).json()["value"]) == 1
        r = c.post(f"/api/machines/{did}/identityChanges/999/accept", json={"Revision": 1})
        assert r.status_code == 404


def test_a_group_that_trusts_reported_identity_lets_the_change_apply_at_once(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    s = _set_up(server)
    did = s["did"]
    with admin(server) as c:
        r = c.put("/api/machinegroups/Group A", json={"trustReportedIdentity": True})
        assert r.status_code == 200 and r.json()["trustReportedIdentity"] is True
    assert post_batch(server, s["credential"], [_info(did, 2, "a-web-01.corp.test", ["ring-b"])]).status_code == 200
    with admin(server) as c:
        assert _group(c, did) == "Group B"
        ch = c.get(f"/api/machines/{did}/identityChanges").json()["value"]
        assert [(x["status"], x["decidedBy"]) for x in ch] == [("Applied", "policy")]
        applied = c.get("/api/audit", params={"action": "device.identity_applied"}).json()["value"]
        assert len(applied) == 1 and applied[0]["actor"] == f"device:{did}"
    # Group B does not trust reports: dropping the tag again waits for review.
    assert post_batch(server, s["credential"], [_info(did, 3, "a-web-01.corp.test", [])]).status_code == 200
    with admin(server) as c:
        assert _group(c, did) == "Group B"
        assert c.get(f"/api/machines/{did}/identityChanges").json()["value"][0]["status"] == "Pending"


@contextmanager
def _portal(server: VigilServer, username: str, password: str) -> Iterator[httpx.Client]:
    with server.client() as c:
        c.get("/login")
        r = c.post("/login", data={"username": username, "password": password, "csrf": c.cookies["vigil_csrf"]})
        assert r.status_code in (200, 303), r.text
        yield c


def test_the_device_page_lists_the_change_and_only_an_admin_accepts_it_there(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    s = _set_up(server)
    did = s["did"]
    assert post_batch(server, s["credential"], [_info(did, 2, "a-web-01.corp.test", ["ring-b"])]).status_code == 200
    with admin(server) as c:
        ch = c.get(f"/api/machines/{did}/identityChanges").json()["value"][0]
    action = f"/devices/{did}/identity/{ch['id']}/accept"
    with _portal(server, "ann", PASSWORD) as c:
        html = c.get(f"/devices/{did}").text
        assert 'id="identity-changes"' in html and "ring-b" in html and "Pending" in html
        assert action not in html  # no button for a Tier-1 analyst
        r = c.post(action, data={"csrf": c.cookies["vigil_csrf"], "revision": "1"})
        assert r.status_code == 403
    with _portal(server, "admin", server.admin_password) as c:
        assert action in c.get(f"/devices/{did}").text
        assert c.post(action, data={"csrf": "forged", "revision": "1"}).status_code == 403
        r = c.post(action, data={"csrf": c.cookies["vigil_csrf"], "revision": "1"})
        assert r.status_code == 303 and r.headers["location"] == f"/devices/{did}"
        html = c.get(f"/devices/{did}").text
        assert "Accepted" in html and "Group B" in html
    with admin(server) as c:
        assert _group(c, did) == "Group B"
        assert len(c.get("/api/audit", params={"action": "device.identity_accept"}).json()["value"]) == 1
