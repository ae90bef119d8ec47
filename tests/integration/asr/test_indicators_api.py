"""/api/indicators on a real server: submit, update, list with OData paging and filter, import with per-row
errors, delete; a read-only user may list but not submit; every change is in the audit log."""

from __future__ import annotations

from tests.integration.server.rbac_support import admin, make_user, token_of
from tests.support import VigilServer

SHA = "c" * 64


def test_indicators_api_round_trip(sqlite_server: VigilServer) -> None:
    srv = sqlite_server
    with admin(srv) as c:
        r = c.post("/api/indicators", json={"indicatorValue": SHA.upper(), "indicatorType": "FileSha256",
                                            "action": "Block", "title": "dropper", "severity": "High",
                                            "rbacGroupNames": ["Ungrouped devices (default)"],
                                            "expirationTime": "2099-01-01T00:00:00Z", "generateAlert": True})
        assert r.status_code == 201, r.text
        made = r.json()
        assert (made["indicatorValue"], made["rbacGroupNames"], made["expirationTime"], made["generateAlert"]) == (
            SHA, ["Ungrouped devices (default)"], "2099-01-01T00:00:00Z", True)
        again = c.post("/api/indicators", json={"indicatorValue": SHA, "indicatorType": "FileSha256",
                                                "action": "Allowed", "title": "dropper (cleared)"})
        assert again.status_code == 200 and again.json()["id"] == made["id"] and again.json()["action"] == "Allowed"
        bad = c.post("/api/indicators", json={"indicatorValue": "999.1.1.1", "indicatorType": "IpAddress",
                                              "action": "Block", "title": "x"})
        assert bad.status_code == 422 and bad.json()["field"] == "indicatorValue"

        batch = c.post("/api/indicators/import", json={"Indicators": [
            {"indicatorValue": "10.9.8.7", "indicatorType": "IpAddress", "action": "Block", "title": "c2"},
            {"indicatorValue": "evil.example", "indicatorType": "DomainName", "action": "Warp", "title": "d"},
            {"indicatorValue": "https://evil.example/x", "indicatorType": "Url", "action": "Audit", "title": "u"},
        ]})
        assert batch.status_code == 200, batch.text
        rows = batch.json()["value"]
        assert [r["isFailed"] for r in rows] == [False, True, False]
        assert rows[1]["indicator"] == "evil.example" and rows[1]["failureReason"].startswith("action")

        page = c.get("/api/indicators", params={"$top": 2, "$orderby": "id"}).json()
        assert [i["indicatorType"] for i in page["value"]] == ["FileSha256", "IpAddress"]
        rest = c.get("/api/indicators", params={"$top": 2, "$skip": 2, "$orderby": "id"}).json()
        assert [i["indicatorType"] for i in rest["value"]] == ["Url"]
        urls = c.get("/api/indicators", params={"$filter": "indicatorType eq 'Url'"}).json()["value"]
        assert [i["indicatorValue"] for i in urls] == ["https://evil.example/x"]
        assert c.get("/api/indicators", params={"$filter": "colour eq 'red'"}).status_code == 400

        assert c.get(f"/api/indicators/{made['id']}").json()["title"] == "dropper (cleared)"
        assert c.delete(f"/api/indicators/{made['id']}").status_code == 204
        assert c.get(f"/api/indicators/{made['id']}").status_code == 404
        actions = [e["action"] for e in c.get("/api/audit", params={"$top": 50}).json()["value"]]
        assert actions.count("indicator.create") == 3 and "indicator.update" in actions
        assert "indicator.delete" in actions

    make_user(srv, "reader", role="read-only")
    with srv.client(token_of(srv, "reader")) as ro:
        assert len(ro.get("/api/indicators").json()["value"]) == 2
        refused = ro.post("/api/indicators", json={"indicatorValue": "1.1.1.1", "indicatorType": "IpAddress",
                                                   "action": "Block", "title": "x"})
        assert refused.status_code == 403
        assert ro.post("/api/indicators/import", json={"Indicators": []}).status_code == 403
