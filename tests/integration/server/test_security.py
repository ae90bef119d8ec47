"""Sign-in security: session fixation, logout, CSRF on forms and API writes, throttling, token scope and expiry."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import sqlalchemy as sa

from tests.integration.server.rbac_support import PASSWORD, admin, make_user
from tests.support import VigilServer
from vigil.config import load_settings
from vigil.core.rbac import Permission
from vigil.store import db
from vigil.store.sessions import create_api_token


def portal_login(c: httpx.Client, username: str, password: str) -> httpx.Response:
    c.get("/login")
    return c.post("/login", data={"username": username, "password": password, "csrf": c.cookies["vigil_csrf"]})


def test_sign_in_gives_a_fresh_session_and_ends_the_one_brought_along(sqlite_server: VigilServer) -> None:
    with sqlite_server.client() as c:
        portal_login(c, "admin", sqlite_server.admin_password)
        first = c.cookies["vigil_session"]
        # A session planted before sign-in (fixation) is never the one used after it.
        portal_login(c, "admin", sqlite_server.admin_password)
        second = c.cookies["vigil_session"]
        assert second != first
    with sqlite_server.client() as old:
        old.cookies.set("vigil_session", first)
        assert old.get("/api/machines").status_code == 401
    with sqlite_server.client() as c:
        c.get("/login")
        csrf = c.cookies["vigil_csrf"]
        planted = {"Cookie": f"vigil_csrf={csrf}; vigil_session=attacker-chosen"}
        assert c.get("/api/machines", headers=planted).status_code == 401
        r = c.post("/login", headers=planted,
                   data={"username": "admin", "password": sqlite_server.admin_password, "csrf": csrf})
        issued = r.cookies["vigil_session"]
        assert issued and issued != "attacker-chosen"
    with sqlite_server.client() as c:
        c.cookies.set("vigil_session", second)
        c.post("/logout")
        assert c.get("/api/machines").status_code == 401  # revoked server-side, not only forgotten


def test_state_changing_forms_and_cookie_writes_need_the_csrf_token(sqlite_server: VigilServer) -> None:
    with sqlite_server.client() as c:
        c.get("/login")
        r = c.post("/login", data={"username": "admin", "password": sqlite_server.admin_password, "csrf": "guess"})
        assert "expired" in r.headers["location"]
        portal_login(c, "admin", sqlite_server.admin_password)
        csrf = c.cookies["vigil_csrf"]
        assert c.post("/plan/init", data={"organization": "ACME"}).status_code == 403
        assert c.post("/plan/init", data={"organization": "ACME", "csrf": "wrong"}).status_code == 403
        assert c.post("/api/plan/init", json={"organization": "ACME"}).status_code == 403
        r = c.post("/api/plan/init", json={"organization": "ACME"}, headers={"x-csrf-token": csrf})
        assert r.status_code == 200
        assert c.post("/plan", data={"document": "x: 1", "csrf": csrf}).status_code == 303


def test_password_guessing_is_throttled_per_account_and_source(sqlite_server: VigilServer) -> None:
    make_user(sqlite_server, "victim")
    with sqlite_server.client() as c:
        # Five free failures, then this source waits (exponential back-off; test_accounts.py has the rest).
        for _ in range(6):
            assert c.post("/api/auth/login", json={"username": "victim", "password": "guess"}).status_code == 401
        r = c.post("/api/auth/login", json={"username": "victim", "password": PASSWORD})
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        # Other accounts are not slowed by it.
        r = c.post("/api/auth/login", json={"username": "admin", "password": sqlite_server.admin_password})
        assert r.is_success
    with admin(sqlite_server) as c:
        failed = c.get("/api/audit", params={"action": "user.sign_in_failed"}).json()["value"]
    assert len(failed) == 6 and failed[0]["source_ip"] == "127.0.0.1"


def test_api_tokens_carry_only_their_scopes_and_die_at_expiry(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    make_user(server, "reader")
    with admin(server) as c:
        r = c.post("/api/tokens", json={"name": "reporting", "scopes": [Permission.VIEW_DATA_SECOPS.value],
                                        "expiresInDays": 1})
        token = r.json()["token"]
        assert r.status_code == 201 and token.startswith("vgt_")
        listed = c.get("/api/tokens").json()["value"]
        assert "token" not in listed[0] and listed[0]["scopes"] == [Permission.VIEW_DATA_SECOPS.value]
    with server.client(token) as t:
        assert t.get("/api/machines").status_code == 200
        assert t.post("/api/machines/x/offboard", json={"Comment": "x"}).status_code == 403
        assert t.post("/api/tokens", json={"name": "child", "scopes": ["Alerts investigation"]}).status_code == 403
    with server.client() as c:
        reader = c.post("/api/auth/login", json={"username": "reader", "password": PASSWORD}).json()["access_token"]
    with server.client(reader) as c:
        r = c.post("/api/tokens", json={"name": "escalate", "scopes": [Permission.MANAGE_PORTAL_SETTINGS.value]})
        assert r.status_code == 403 and r.json()["field"] == "scopes"
    engine = db.make_engine(load_settings(server.data_dir).db_url)
    try:
        with engine.begin() as conn:
            uid = conn.execute(sa.text("SELECT id FROM users WHERE username = 'admin'")).scalar_one()
            now = datetime.now(UTC)
            _, short = create_api_token(conn, user_id=uid, name="short", scopes=frozenset(Permission),
                                        expires_at=now + timedelta(seconds=1), now=now)
    finally:
        engine.dispose()
    with server.client(short) as t:
        assert t.get("/api/machines").status_code == 200
        time.sleep(1.5)
        assert t.get("/api/machines").status_code == 401
    with admin(server) as c:
        tid = c.get("/api/tokens").json()["value"][0]["id"]
        assert c.delete(f"/api/tokens/{tid}").status_code == 200
    with server.client(token) as t:
        assert t.get("/api/machines").status_code == 401
