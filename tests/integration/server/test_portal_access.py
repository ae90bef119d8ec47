"""Users, roles, user groups and API tokens from the portal: administrators change them through the same code as
the API (audited), others get the page's permission named, and a new token's secret is shown once."""

from __future__ import annotations

from tests.integration.server.rbac_support import PASSWORD, admin, make_user
from tests.integration.server.test_portal_response import _portal
from tests.support import VigilServer

NEW_PASSWORD = "another long passphrase 42"


def test_users_roles_and_groups_in_the_portal(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    make_user(server, "ro")
    make_user(server, "other", email="other@example.org")
    with _portal(server, "ro", PASSWORD) as c:
        # A read-only user gets a read-only page of their own access, not a refusal, and no other account.
        r = c.get("/users", headers={"Accept": "text/html"})
        assert r.status_code == 200 and 'id="read-only"' in r.text and "Manage portal system settings" in r.text
        own = r.text.split('id="own-permissions">')[1].split("</ul>")[0]
        assert "View data – Security operations" in own and "Alerts investigation" not in own
        assert "All device groups" in r.text and "read-only" in r.text
        assert "other" not in r.text.split("<main")[1] and "<form" not in r.text.split("<main")[1]
        assert 'href="/users"' in c.get("/settings").text
        assert c.post("/users", data={"csrf": c.cookies["vigil_csrf"], "username": "x", "password": PASSWORD}
                      ).status_code == 403
        assert c.post("/users/other/disable", data={"csrf": c.cookies["vigil_csrf"]}).status_code == 403
    with _portal(server, "admin", server.admin_password) as c:
        csrf = c.cookies["vigil_csrf"]
        assert 'data-user="ro"' in c.get("/users").text
        assert c.post("/users", data={"csrf": "forged", "username": "bea", "password": PASSWORD}).status_code == 403
        weak = c.post("/users", data={"csrf": csrf, "username": "bea", "password": "short"})
        assert weak.status_code == 422 and "password" in weak.text
        assert c.post("/users", data={"csrf": csrf, "username": "bad name", "password": PASSWORD}
                      ).status_code == 422
        assert c.post("/users", data={"csrf": csrf, "username": "bea", "password": PASSWORD, "role": "read-only",
                                      "email": "bea@corp.example"}).status_code == 303
        assert c.post("/users", data={"csrf": csrf, "username": "bea", "password": PASSWORD}).status_code == 409
        assert c.post("/users/bea/join", data={"csrf": csrf, "group": "tier-1"}).status_code == 303
        assert c.post("/users/bea/password", data={"csrf": csrf, "password": NEW_PASSWORD}).status_code == 303
        assert c.post("/users/admin/disable", data={"csrf": csrf}).status_code == 422  # not oneself
        assert c.post("/roles", data={"csrf": csrf, "name": "Tier 1", "description": "triage",
                                      "permissions": ["View data – Security operations", "Alerts investigation"],
                                      "user_groups": "tier-1"}).status_code == 303
        bad_role = c.post("/roles", data={"csrf": csrf, "name": "Bad", "permissions": ["Root"]})
        assert bad_role.status_code == 422 and "unknown permission 'Root'" in bad_role.text
        page = c.get("/users").text
        assert 'data-role="Tier 1"' in page and "tier-1" in page
    with server.client() as c:  # the reset password works, the old one no longer does
        assert c.post("/api/auth/login", json={"username": "bea", "password": PASSWORD}).status_code == 401
        assert c.post("/api/auth/login", json={"username": "bea", "password": NEW_PASSWORD}).status_code == 200
    with _portal(server, "admin", server.admin_password) as c:
        assert c.post("/users/bea/disable", data={"csrf": c.cookies["vigil_csrf"]}).status_code == 303
        assert c.post("/roles/delete", data={"csrf": c.cookies["vigil_csrf"], "name": "Tier 1"}).status_code == 303
    with admin(server) as c:
        [bea] = [u for u in c.get("/api/users").json()["value"] if u["username"] == "bea"]
        assert bea["disabled"] and bea["userGroups"] == ["tier-1"] and bea["email"] == "bea@corp.example"
        actions = {e["action"] for e in c.get("/api/audit").json()["value"]}
        assert {"user.create", "user.update", "user_group.add_member", "role.put", "role.delete"} <= actions
    with server.client() as c:
        assert c.post("/api/auth/login", json={"username": "bea", "password": NEW_PASSWORD}).status_code == 401
    with _portal(server, "admin", server.admin_password) as c:
        assert 'data-user="bea"' in c.get("/users").text  # a disabled account is still listed, to enable it
        assert c.post("/users/bea/enable", data={"csrf": c.cookies["vigil_csrf"]}).status_code == 303
    with server.client() as c:
        assert c.post("/api/auth/login", json={"username": "bea", "password": NEW_PASSWORD}).status_code == 200


def test_an_api_token_from_the_portal_shows_its_secret_once(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    make_user(server, "ro")
    with _portal(server, "ro", PASSWORD) as c:
        csrf = c.cookies["vigil_csrf"]
        page = c.get("/tokens").text
        assert "View data – Security operations" in page and "Alerts investigation" not in page
        beyond = c.post("/tokens", data={"csrf": csrf, "name": "x", "scopes": ["Alerts investigation"]})
        assert beyond.status_code == 403 and "you do not hold Alerts investigation" in beyond.text
        assert c.post("/tokens", data={"csrf": csrf, "name": "x", "scopes": ["View data – Security operations"],
                                       "expires_in_days": "soon"}).status_code == 422
        assert c.post("/tokens", data={"csrf": csrf, "name": "x", "scopes": ["View data – Security operations"],
                                       "expires_in_days": "999"}).status_code == 422
        made = c.post("/tokens", data={"csrf": csrf, "name": "siem pull", "expires_in_days": "7",
                                       "scopes": ["View data – Security operations"]})
        assert made.status_code == 200 and made.headers["cache-control"] == "no-store"
        secret = made.text.split('id="token-secret">')[1].split("<")[0]
        assert len(secret) > 20 and secret not in c.get("/tokens").text  # shown once
        [token] = [t for t in c.get("/api/tokens").json()["value"]]
        assert token["name"] == "siem pull"
    with server.client(secret) as c:
        assert c.get("/api/machines").status_code == 200
        assert c.get("/api/users").status_code == 403
    with _portal(server, "ro", PASSWORD) as c:
        assert c.post(f"/tokens/{token['id']}/revoke", data={"csrf": c.cookies["vigil_csrf"]}).status_code == 303
        assert "Revoked" in c.get("/tokens").text
    with server.client(secret) as c:
        assert c.get("/api/machines").status_code == 401
