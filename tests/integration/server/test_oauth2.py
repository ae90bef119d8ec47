"""OAuth2 client credentials on a real server: registration, the token endpoint, and every way in that must fail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import sqlalchemy as sa

from tests.support import VigilServer, enroll_raw
from vigil.config import load_settings
from vigil.store.db import make_engine
from vigil.store.schema import oauth_tokens

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
SCOPE = "https://api.securitycenter.microsoft.com/.default"


def _register(server: VigilServer, token: str, name: str, roles: list[str]) -> httpx.Response:
    with server.client(token) as c:
        return c.post("/api/applications", json={"name": name, "roles": roles, "secretExpiresInDays": 30})


def _token(server: VigilServer, client_id: str, secret: str, scope: str = SCOPE, path: str = "/oauth2/v2.0/token",
           grant: str = "client_credentials") -> httpx.Response:
    with server.client() as c:
        return c.post(path, headers=FORM, data={"grant_type": grant, "client_id": client_id,
                                                "client_secret": secret, "scope": scope})


def _engine(server: VigilServer) -> sa.Engine:
    return make_engine(load_settings(server.data_dir).db_url)


def test_client_credentials_open_only_the_apps_roles_until_revoked(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    admin = server.admin_token()
    device = enroll_raw(server, server.onboarding_package()["token"], "win-01").json()["device_id"]
    r = _register(server, admin, "SIEM reader", ["Machine.Read.All", "Alert.Read.All", "Machine.Isolate"])
    assert r.status_code == 201, r.text
    app = r.json()
    assert app["clientSecret"].startswith("vgs_") and app["roles"] == [
        "Alert.Read.All", "Machine.Isolate", "Machine.Read.All"]
    with server.client(admin) as c:
        listed = c.get("/api/applications").json()
    assert [a["clientId"] for a in listed["value"]] == [app["clientId"]]
    assert "clientSecret" not in listed["value"][0] and app["clientSecret"] not in str(listed)

    # Wrong secret, unknown client, wrong grant, a role not granted, a missing field: each refused as RFC 6749 says.
    wrong = _token(server, app["clientId"], app["clientSecret"] + "x")
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    assert _token(server, "00000000-0000-0000-0000-000000000000", app["clientSecret"]).status_code == 401
    grant = _token(server, app["clientId"], app["clientSecret"], grant="password")
    assert grant.status_code == 400 and grant.json()["error"] == "unsupported_grant_type"
    beyond = _token(server, app["clientId"], app["clientSecret"], scope="Machine.Offboard")
    assert beyond.status_code == 400 and beyond.json()["error"] == "invalid_scope"
    assert "Machine.Offboard" in beyond.json()["error_description"]
    with server.client() as c:
        missing = c.post("/oauth2/v2.0/token", headers=FORM, data={"grant_type": "client_credentials"})
    assert missing.status_code == 400 and missing.json()["error_description"] == "client_id: missing"

    # A token for the whole app (Entra ID's tenant path works too), and one narrowed to a single role.
    full = _token(server, app["clientId"], app["clientSecret"], path="/contoso.onmicrosoft.com/oauth2/v2.0/token")
    assert full.status_code == 200, full.text
    body = full.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert full.headers["cache-control"] == "no-store"
    narrow = _token(server, app["clientId"], app["clientSecret"], scope="Machine.Read.All").json()["access_token"]
    isolate = {"Comment": "from the SIEM", "IsolationType": "Full"}
    with server.client(body["access_token"]) as c:
        assert c.get("/api/machines").status_code == 200
        assert c.get("/api/alerts").status_code == 200
        assert c.post(f"/api/machines/{device}/isolate", json=isolate).status_code == 201
        # Beyond its roles: managing apps, another user's self-service routes, offboarding.
        assert c.get("/api/applications").status_code == 403
        assert c.get("/api/tokens").status_code == 403
        assert c.post("/api/tokens", json={"name": "x", "scopes": ["Alerts investigation"]}).status_code == 403
        assert c.post(f"/api/machines/{device}/offboard", json={"Comment": "x"}).status_code == 403
    with server.client(narrow) as c:
        assert c.get("/api/machines").status_code == 200
        assert c.post(f"/api/machines/{device}/unisolate", json={"Comment": "x"}).status_code == 403
    # An access token is a bearer token, not a cookie.
    with httpx.Client(base_url=server.url, verify=server.ca, cookies={"vigil_session": narrow}) as c:
        assert c.get("/api/machines").status_code == 401

    # Expired: the row says so (the server's clock is the real one, so move the expiry, not the clock).
    engine = _engine(server)
    with engine.begin() as conn:
        conn.execute(oauth_tokens.update().values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    with server.client(narrow) as c:
        assert c.get("/api/machines").status_code == 401
    fresh = _token(server, app["clientId"], app["clientSecret"]).json()["access_token"]

    # Revoked: a token issued before is refused at once (no replay), and no new one is issued.
    with server.client(admin) as c:
        assert c.delete(f"/api/applications/{app['id']}").json()["revoked"] is True
    with server.client(fresh) as c:
        assert c.get("/api/machines").status_code == 401
    again = _token(server, app["clientId"], app["clientSecret"])
    assert again.status_code == 401 and again.json()["error_description"] == "the application is revoked"

    with server.client(admin) as c:
        log = c.get("/api/audit", params={"$top": 500}).json()["value"]
    actions = [(e["actor"], e["action"]) for e in log if e["target_type"] == "application"]
    assert ("admin", "application.create") in actions and ("admin", "application.revoke") in actions
    assert ("app:SIEM reader", "application.token") in actions
    # The app's own change (the isolation) is audited under its name.
    assert any(e["actor"] == "app:SIEM reader" for e in log if e["target_type"] != "application")


def test_registration_checks_roles_and_refuses_escalation(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    admin = server.admin_token()
    bad = _register(server, admin, "x", ["Machine.Read.All", "Machine.Fly"])
    assert bad.status_code == 422 and bad.json()["field"] == "roles[1]" and "Machine.Fly" in bad.json()["detail"]
    assert _register(server, admin, "dup", ["Alert.Read.All"]).status_code == 201
    assert _register(server, admin, "dup", ["Alert.Read.All"]).json()["field"] == "name"
    # An API token holding only "Manage security settings" cannot make an app that reads machines.
    with server.client(admin) as c:
        scoped = c.post("/api/tokens", json={"name": "settings", "scopes": ["Manage security settings"]}).json()
    r = _register(server, scoped["token"], "reader", ["Machine.Read.All"])
    assert r.status_code == 403 and "View data" in r.json()["detail"]
    assert _register(server, scoped["token"], "offboarder", ["Machine.Offboard"]).status_code == 201
    with server.client() as c:
        assert c.get("/api/applications").status_code == 401


def test_failed_token_requests_are_throttled_per_address(sqlite_server: VigilServer) -> None:
    codes = [_token(sqlite_server, "nobody", "wrong").status_code for _ in range(22)]
    assert codes[:20] == [401] * 20 and codes[-1] == 429
