"""Identity alerts (issue 14): sustained password guessing raises one alert about the account, with no device,
seen only by callers whose scope is every device group — never by a scoped Tier-1 analyst."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from tests.integration.server.rbac_support import PASSWORD, admin, enroll_with_alert, groups_a_and_b, make_user
from tests.integration.server.test_accounts import from_source, login
from tests.integration.server.test_security import portal_login
from tests.support import VigilServer
from vigil.core.rbac import TIER_PERMISSIONS
from vigil.core.throttle import GUESSING_RULE_ID
from vigil.store import db
from vigil.store.alerts import NewHit, record_hit
from vigil.store.schema import alerts


def _guessing_alerts(c: httpx.Client) -> list[dict[str, object]]:
    r = c.get("/api/alerts")
    assert r.status_code == 200, r.text
    return [a for a in r.json()["value"] if a["detectorId"] == GUESSING_RULE_ID]


def test_guessing_raises_one_identity_alert_that_a_scoped_analyst_cannot_see(server: VigilServer) -> None:
    with admin(server) as c:
        enroll_with_alert(server, "a-web-01")  # an alert alice may see, so her empty result means something
        groups_a_and_b(c)
        assert c.put("/api/roles/tier1", json={"permissions": sorted(p.value for p in TIER_PERMISSIONS[1]),
                                               "userGroups": ["ug-tier1"]}).status_code == 200
        assert c.post("/api/rbac/mode", json={"mode": "rbac"}).status_code == 200
    make_user(server, "alice", groups=("ug-a", "ug-tier1"))
    # bob is no administrator but sees every device group: tenant-wide.
    make_user(server, "bob", groups=("ug-a", "ug-b", "ug-admins", "ug-tier1"))

    # 30 wrong passwords for admin from two addresses: past the 20 that make guessing sustained.
    for address in ("127.0.0.5", "127.0.0.6"):
        with from_source(server, address) as attacker:
            for _ in range(15):
                assert login(attacker, "admin", "not the password").status_code in (401, 429)

    with admin(server) as c:
        found = _guessing_alerts(c)
        assert len(found) == 1, found  # one alert for the burst, not one per guess
        a = found[0]
        assert a["machineId"] is None and a["relatedUser"] == {"userName": "admin", "domainName": None}
        assert a["mitreTechniques"] == ["T1110"] and a["severity"] == "Medium"
        assert a["category"] == "Credential access" and a["detectionSource"] == "VigilSignIn"
        assert a["evidence"][0]["accountName"] == "admin"
        assert set(a["evidence"][0]["ipAddresses"]) == {"127.0.0.5", "127.0.0.6"}
        # Filters over the queue keep working with a device-less alert in it.
        assert [x["id"] for x in c.get("/api/alerts", params={"severity": "Medium"}).json()["value"]
                if x["detectorId"] == GUESSING_RULE_ID] == [a["id"]]
        assert all(x["machineId"] for x in c.get("/api/alerts", params={"machineId": "nope"}).json()["value"])
        assert c.get(f"/api/alerts/{a['id']}").json()["relatedUser"]["userName"] == "admin"
        # It opens an incident of its own: no devices, the alert in it.
        incident = c.get(f"/api/incidents/{a['incidentId']}").json()
        assert incident["machineIds"] == [] and [x["id"] for x in incident["alerts"]] == [a["id"]]
        r = c.patch(f"/api/alerts/{a['id']}", json={"status": "InProgress", "comment": "looking"})
        assert r.status_code == 200 and r.json()["status"] == "InProgress"

    with server.client(_token(server, "bob")) as bob:
        assert [x["id"] for x in _guessing_alerts(bob)] == [a["id"]]
    with server.client(_token(server, "alice")) as alice:
        seen = alice.get("/api/alerts").json()["value"]
        assert seen and all(x["machineId"] for x in seen)  # her device alert, never the identity alert
        assert alice.get(f"/api/alerts/{a['id']}").status_code == 404
        assert alice.patch(f"/api/alerts/{a['id']}", json={"status": "Resolved"}).status_code == 404
        assert alice.get(f"/api/incidents/{a['incidentId']}").status_code == 404
        assert a["incidentId"] not in [i["incidentId"] for i in alice.get("/api/incidents").json()["value"]]
    with server.client() as portal:
        assert portal_login(portal, "alice", PASSWORD).status_code == 303
        assert a["id"] not in portal.get("/alerts").text
        assert portal.get(f"/alerts/{a['id']}").status_code == 404
    with server.client() as portal:
        assert portal_login(portal, "admin", server.admin_password).status_code == 303
        listing = portal.get("/alerts").text
        assert a["id"] in listing and "Account admin" in listing
        page = portal.get(f"/alerts/{a['id']}")
        assert page.status_code == 200 and "127.0.0.5" in page.text and "T1110" in page.text
        assert portal.get("/").status_code == 200  # the dashboard's top devices skip the device-less alert
        assert portal.get(f"/incidents/{a['incidentId']}").status_code == 200

    # A new device group bob is not given: he no longer sees every group, so no longer the identity alert.
    with admin(server) as c:
        assert c.put("/api/machinegroups/Group C", json={
            "rules": [{"property": "name", "operator": "startsWith", "value": "c-"}],
            "userGroups": ["ug-c"]}).status_code == 200
    with server.client(_token(server, "bob")) as bob:
        assert _guessing_alerts(bob) == []


def _token(server: VigilServer, name: str) -> str:
    with server.client() as c:
        r = c.post("/api/auth/login", json={"username": name, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])


def test_identity_hits_fold_per_account_and_rule(db_url: str, tmp_path: Path) -> None:
    engine = db.make_engine(db_url or f"sqlite:///{tmp_path / 'a.db'}")
    db.upgrade(engine)
    now = datetime(2026, 12, 7, 12, tzinfo=UTC)

    def hit(account: str, at: datetime) -> NewHit:
        return NewHit(machine_id=None, account_name=account, rule_id=GUESSING_RULE_ID, title="guessing",
                      description="", severity="Medium", category="Credential access",
                      detection_source="VigilSignIn", techniques=["T1110"], event_time=at,
                      evidence={"accountName": account})

    try:
        with engine.begin() as conn:
            first, created = record_hit(conn, hit("admin", now), now)
            again, created_again = record_hit(conn, hit("admin", now + timedelta(minutes=20)), now)
            other, _ = record_hit(conn, hit("carol", now), now)
            later, created_later = record_hit(conn, hit("admin", now + timedelta(hours=3)), now)
            rows = {r.id: r for r in conn.execute(alerts.select())}
    finally:
        engine.dispose()
    assert created and not created_again and again == first
    assert other != first and later not in (first, other) and created_later
    assert rows[first].event_count == 2 and rows[first].machine_id is None and rows[first].account_name == "admin"
