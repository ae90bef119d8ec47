"""Suppression rules and device groups from the portal: a read-only user sees them and cannot change them, every
form needs its CSRF token, changes reach the same services as the API and land in the audit log."""

from __future__ import annotations

from tests.e2e import portal_seed
from tests.integration.server.rbac_support import PASSWORD, admin, make_user
from tests.integration.server.test_portal_response import _portal
from tests.support import VigilServer


def test_suppression_rules_in_the_portal(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    make_user(server, "ro")
    with _portal(server, "admin", server.admin_password) as c:
        csrf = c.cookies["vigil_csrf"]
        assert 'id="new-suppression"' in c.get("/suppression").text
        form = {"csrf": csrf, "alert_title": "Backup agent runs tar", "scope": "Organization", "action": "Resolve",
                "condition_field": ["FileName", "FolderPath", ""], "condition_value": ["tar", "/usr/bin/*", ""],
                "comment": "nightly backup"}
        assert c.post("/suppression", data={**form, "csrf": "forged"}).status_code == 403
        bad = c.post("/suppression", data={**form, "condition_field": ["Sha256"], "condition_value": ["*"]})
        assert bad.status_code == 422 and "conditions.Sha256" in bad.text
        device_without_one = c.post("/suppression", data={**form, "scope": "Device"})
        assert device_without_one.status_code == 422 and "machineId" in device_without_one.text
        assert c.post("/suppression", data=form).status_code == 303
        page = c.get("/suppression").text
        assert "Backup agent runs tar" in page and "FolderPath = /usr/bin/*" in page
    with admin(server) as c:
        [rule] = c.get("/api/suppressionRules").json()["value"]
        assert (rule["action"], rule["conditions"], rule["createdBy"]) == (
            "Resolve", {"FileName": "tar", "FolderPath": "/usr/bin/*"}, "admin")
    with _portal(server, "ro", PASSWORD) as c:
        page = c.get("/suppression").text
        assert "Backup agent runs tar" in page and 'id="new-suppression"' not in page and "Disable" not in page
        assert c.post(f"/suppression/{rule['id']}/disable", data={"csrf": c.cookies["vigil_csrf"]}
                      ).status_code == 403
    with _portal(server, "admin", server.admin_password) as c:
        assert c.post(f"/suppression/{rule['id']}/disable", data={"csrf": c.cookies["vigil_csrf"]}
                      ).status_code == 303
        assert c.post(f"/suppression/{rule['id']}/delete", data={"csrf": c.cookies["vigil_csrf"]}
                      ).status_code == 303
    with admin(server) as c:
        assert c.get("/api/suppressionRules").json()["value"] == []
        actions = [e["action"] for e in c.get("/api/audit").json()["value"]]
        assert {"suppression.create", "suppression.disable", "suppression.delete"} <= set(actions)


def test_device_groups_with_preview_in_the_portal(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    portal_seed.enroll(server, ["web-01.corp.example", "web-02.corp.example", "db-01.corp.example"])
    make_user(server, "ro")
    rule = {"property": ["name", "name"], "operator": ["startsWith", "endsWith"], "value": ["web-", ".example"]}
    with _portal(server, "ro", PASSWORD) as c:
        csrf = c.cookies["vigil_csrf"]
        page = c.get("/machinegroups").text
        assert "Ungrouped devices (default)" in page and "Save group" not in page
        preview = c.post("/machinegroups/preview", data={"csrf": csrf, **rule}).text  # previewing changes nothing
        assert "web-01.corp.example" in preview and "web-02.corp.example" in preview
        assert "db-01.corp.example</a></li>" not in preview
        assert c.post("/machinegroups", data={"csrf": csrf, "name": "Web", **rule}).status_code == 403
    with _portal(server, "admin", server.admin_password) as c:
        csrf = c.cookies["vigil_csrf"]
        bad = c.post("/machinegroups/preview", data={"csrf": csrf, "property": ["colour"], "operator": ["equals"],
                                                     "value": ["red"]})
        assert "rules[0].property: use one of" in bad.text
        assert c.post("/machinegroups", data={"csrf": "forged", "name": "Web", **rule}).status_code == 403
        assert c.post("/machinegroups", data={"csrf": csrf, "name": "", **rule}).status_code == 422
        r = c.post("/machinegroups", data={"csrf": csrf, "name": "Web servers", "description": "front end",
                                            "automation_level": "SemiRemediation", **rule})
        assert r.status_code == 303 and r.headers["location"] == "/machinegroups?group=Web+servers"
        assert "front end" in c.get(r.headers["location"]).text
    with admin(server) as c:
        [web] = [g for g in c.get("/api/machinegroups").json()["value"] if g["name"] == "Web servers"]
        assert web["deviceCount"] == 2 and web["automationLevel"] == "SemiRemediation"
        assert web["rules"][0] == {"property": "name", "operator": "startsWith", "value": "web-"}
    with _portal(server, "admin", server.admin_password) as c:
        assert c.post("/machinegroups/delete", data={"csrf": c.cookies["vigil_csrf"], "name": "Web servers"}
                      ).status_code == 303
    with admin(server) as c:
        assert "Web servers" not in {g["name"] for g in c.get("/api/machinegroups").json()["value"]}
        actions = {e["action"] for e in c.get("/api/audit").json()["value"]}
        assert {"device_group.put", "device_group.delete"} <= actions


def test_the_settings_hub_lists_what_the_user_may_open(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    make_user(server, "ro")
    with _portal(server, "ro", PASSWORD) as c:
        hub = c.get("/settings").text
        # /users opens for everyone now: a read-only page of one's own access without the admin permission.
        assert "/suppression" in hub and "/tokens" in hub and 'href="/users"' in hub
    with _portal(server, "admin", server.admin_password) as c:
        assert 'href="/users"' in c.get("/settings").text
