"""Accounts on a real server: back-off per (account, source) instead of lock-out, the password policy, TOTP over
the API, and sessions revoked when a password, role or second factor changes."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pyotp
import pytest

from tests.integration.server.rbac_support import PASSWORD, admin, make_user, token_of
from tests.support import VigilServer


def from_source(server: VigilServer, address: str, token: str | None = None) -> httpx.Client:
    """A client whose connections come from ``address`` (any of 127.0.0.0/8 reaches the server on loopback)."""
    transport = httpx.HTTPTransport(verify=server.ca, local_address=address)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=server.url, transport=transport, headers=headers, timeout=30)


def login(c: httpx.Client, username: str, password: str, **extra: str) -> httpx.Response:
    return c.post("/api/auth/login", json={"username": username, "password": password, **extra})


def test_a_hundred_wrong_passwords_from_one_source_do_not_keep_the_admin_out(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    codes = []
    with from_source(server, "127.0.0.1") as attacker:
        for _ in range(100):
            r = login(attacker, "admin", "wrong password guess")
            codes.append(r.status_code)
            if r.status_code == 429:
                assert int(r.headers["retry-after"]) >= 1 and "try again in" in r.json()["detail"]
        assert codes[:5] == [401] * 5 and codes.count(429) >= 90
        # Even the right password waits, from this source.
        r = login(attacker, "admin", server.admin_password)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    with from_source(server, "127.0.0.2") as elsewhere:
        r = login(elsewhere, "admin", server.admin_password)
        assert r.status_code == 200, r.text
        guessing = elsewhere.get("/api/audit", params={"action": "user.password_guessing"},
                                 headers={"Authorization": f"Bearer {r.json()['access_token']}"}).json()["value"]
    # One record for the burst (not one per attempt), naming the account and the source.
    assert len(guessing) == 1
    assert guessing[0]["target_id"] == "admin" and guessing[0]["after"]["sources"] == ["127.0.0.1"]
    assert "sustained password guessing for account 'admin'" in server.log.read_text()


def test_the_wait_doubles_and_ends(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    make_user(server, "victim")
    with from_source(server, "127.0.0.3") as c:
        assert [login(c, "victim", "guess-guess").status_code for _ in range(6)] == [401] * 6
        r = login(c, "victim", PASSWORD)
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        time.sleep(1.1)
        assert login(c, "victim", "guess-guess").status_code == 401
        r = login(c, "victim", PASSWORD)
        assert r.status_code == 429 and r.headers["retry-after"] == "2"
        time.sleep(2.1)
        assert login(c, "victim", PASSWORD).status_code == 200
        # A success starts afresh: the next typo is free again.
        assert login(c, "victim", "guess-guess").status_code == 401
        assert login(c, "victim", PASSWORD).status_code == 200


@pytest.mark.parametrize(("password", "detail"), [
    ("password1234", "this password is in the list of common passwords"),
    ("Dragon2026!!", "this password is a common password with a few characters added"),
    ("vigil-2026-alice", "this password is built on a word that names this service or account ('vigil')"),
    ("short-one", "this password is too short: use at least 12 characters (it has 9)"),
    ("x" * 257, "this password is too long: use at most 256 characters (it has 257)"),
    ("aaaaaaaaaaaaaaaaaaaa", "this password is too easy to guess"),
])
def test_blocklisted_and_weak_passwords_are_refused_on_create(sqlite_server: VigilServer, password: str,
                                                              detail: str) -> None:
    with admin(sqlite_server) as c:
        r = c.post("/api/users", json={"username": "alice", "password": password})
        assert r.status_code == 422 and r.json()["field"] == "password"
        assert r.json()["detail"].startswith(detail)
        assert "alice" not in [u["username"] for u in c.get("/api/users").json()["value"]]


def test_password_change_checks_the_policy_and_revokes_every_session(server: VigilServer) -> None:
    make_user(server, "alice")
    first, second = token_of(server, "alice"), token_of(server, "alice")
    new = "seven otters juggle quietly"
    with server.client(first) as c:
        r = c.post("/api/auth/password", json={"currentPassword": PASSWORD, "newPassword": "qwertyuiop123"})
        assert r.status_code == 422 and r.json()["field"] == "newPassword"
        assert "common password" in r.json()["detail"]
        r = c.post("/api/auth/password", json={"currentPassword": "not it at all", "newPassword": new})
        assert r.status_code == 403 and r.json()["field"] == "currentPassword"
        assert c.get("/api/auth/me").status_code == 200  # refused changes revoke nothing
        assert c.post("/api/auth/password", json={"currentPassword": PASSWORD, "newPassword": new}).status_code == 200
        assert c.get("/api/auth/me").status_code == 401
    with server.client(second) as c:
        assert c.get("/api/auth/me").status_code == 401
    with server.client() as c:
        assert login(c, "alice", PASSWORD).status_code == 401
        assert login(c, "alice", new).status_code == 200
    # An administrator's reset: the same policy, and the user is signed out everywhere.
    alice = token_of_password(server, "alice", new)
    with admin(server) as c:
        r = c.put("/api/users/alice/password", json={"password": "iloveyou12345"})
        assert r.status_code == 422 and "common password" in r.json()["detail"]
        assert c.put("/api/users/alice/password", json={"password": "brass lanterns at low tide"}).status_code == 200
        assert c.put("/api/users/nobody/password", json={"password": "brass lanterns at low tide"}).status_code == 404
        actions = [e["action"] for e in c.get("/api/audit").json()["value"]]
        assert "user.password_change" in actions and "user.password_reset" in actions
    with server.client(alice) as c:
        assert c.get("/api/auth/me").status_code == 401


def token_of_password(server: VigilServer, name: str, password: str) -> str:
    with server.client() as c:
        r = login(c, name, password)
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])


def test_a_role_or_group_change_revokes_the_users_sessions(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    make_user(server, "bob")
    bob = token_of(server, "bob")
    with admin(server) as c:
        assert c.patch("/api/users/bob", json={"email": "bob@example.org"}).status_code == 200
        with server.client(bob) as b:
            assert b.get("/api/auth/me").status_code == 200  # an e-mail change is not a role change
        assert c.patch("/api/users/bob", json={"role": "full-access"}).status_code == 200
        with server.client(bob) as b:
            assert b.get("/api/auth/me").status_code == 401
        bob = token_of(server, "bob")
        assert c.put("/api/usergroups/ug-ops/members/bob").status_code == 200
        with server.client(bob) as b:
            assert b.get("/api/auth/me").status_code == 401
        bob = token_of(server, "bob")
        assert c.delete("/api/usergroups/ug-ops/members/bob").status_code == 200
        with server.client(bob) as b:
            assert b.get("/api/auth/me").status_code == 401


def _next_step_code(secret: str) -> str:
    """A code of the next time step: valid now (one step of drift is accepted) and not yet spent."""
    totp = pyotp.TOTP(secret)
    return totp.at(datetime.now(UTC) + timedelta(seconds=30))


def test_totp_over_the_api_replay_recovery_codes_and_admin_reset(server: VigilServer) -> None:
    make_user(server, "carol")
    carol = token_of(server, "carol")
    with server.client(carol) as c:
        assert c.get("/api/auth/mfa").json() == {"totp": False, "state": "not-required", "required": False,
                                                 "deadline": None, "recoveryCodesLeft": 0}
        secret = c.post("/api/auth/mfa/totp").json()["secret"]
        assert c.post("/api/auth/mfa/totp").json()["secret"] == secret  # the same enrolment until confirmed
        assert c.post("/api/auth/mfa/totp/confirm", json={"code": "000000"}).status_code == 422
        r = c.post("/api/auth/mfa/totp/confirm", json={"code": pyotp.TOTP(secret).now()})
        assert r.status_code == 200, r.text
        recovery = r.json()["recoveryCodes"]
        assert len(recovery) == 10
        assert c.get("/api/auth/me").status_code == 401  # turning TOTP on signed every session out
    with from_source(server, "127.0.0.4") as c:
        r = login(c, "carol", PASSWORD)
        assert r.status_code == 401 and r.json()["error"] == "mfa_required" and r.json()["field"] == "totp"
        assert login(c, "carol", PASSWORD, totp="123456").status_code == 401
        code = _next_step_code(secret)
        r = login(c, "carol", PASSWORD, totp=code)
        assert r.status_code == 200, r.text
        # The same code again, inside its window: refused.
        r = login(c, "carol", PASSWORD, totp=code)
        assert r.status_code == 401 and r.json()["error"] == "bad_second_factor"
        assert login(c, "carol", PASSWORD, recoveryCode=recovery[0].upper()).status_code == 200
        r = login(c, "carol", PASSWORD, recoveryCode=recovery[0])
        assert r.status_code == 401 and r.json()["field"] == "recoveryCode"  # each code once
        token = login(c, "carol", PASSWORD, recoveryCode=recovery[1]).json()["access_token"]
    with server.client(token) as c:
        assert c.get("/api/auth/mfa").json()["recoveryCodesLeft"] == 8
        # Turning it off needs the password, and a wrong one is refused.
        assert c.post("/api/auth/mfa/disable", json={"password": "not the password"}).status_code == 403
    with admin(server) as c:
        assert c.delete("/api/users/carol/mfa").status_code == 200
        assert c.delete("/api/users/carol/mfa").status_code == 409
        audit = {(e["action"], e["actor"]) for e in c.get("/api/audit").json()["value"] if e["target_id"] == "carol"}
    assert {("user.mfa_enable", "carol"), ("user.mfa_reset", "admin")} <= audit
    with server.client(token) as c:
        assert c.get("/api/auth/me").status_code == 401
    with server.client() as c:
        assert login(c, "carol", PASSWORD).status_code == 200  # the password alone again


def test_an_api_token_cannot_change_its_owners_password_or_second_factor(sqlite_server: VigilServer) -> None:
    with admin(sqlite_server) as c:
        secret = c.post("/api/tokens", json={"name": "automation", "scopes": ["View data – Security operations"]})
        token = secret.json()["token"]
    with sqlite_server.client(token) as t:
        r = t.post("/api/auth/password", json={"currentPassword": sqlite_server.admin_password,
                                              "newPassword": "seven otters juggle quietly"})
        assert r.status_code == 403 and r.json()["error"] == "session_required"
        assert t.post("/api/auth/mfa/totp").status_code == 403


def test_the_second_factor_steps_cannot_be_skipped_or_forged(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    make_user(server, "frank")
    with server.client(token_of(server, "frank")) as c:
        secret = c.post("/api/auth/mfa/totp").json()["secret"]
        assert c.post("/api/auth/mfa/totp/confirm", json={"code": pyotp.TOTP(secret).now()}).status_code == 200
    with server.client() as anon:
        for path in ("/account", "/account/totp", "/account/totp/qr.svg"):
            r = anon.get(path)
            assert r.status_code == 303 and r.headers["location"] == "/login", path
        anon.cookies.set("vigil_mfa_enrol", "forged")
        assert anon.get("/account/totp").headers["location"] == "/login"
    with server.client() as c:
        c.get("/login")
        r = c.post("/login", data={"username": "frank", "password": PASSWORD, "csrf": c.cookies["vigil_csrf"]})
        assert r.status_code == 303 and r.headers["location"] == "/login/totp"
        assert "vigil_session" not in r.cookies  # the password alone opens no session
        pending = r.cookies["vigil_mfa"]
        assert c.get("/api/machines").status_code == 401
        # The second-factor cookie is not an enrolment cookie (another salt, another path).
        c.cookies.set("vigil_mfa_enrol", pending, path="/account/totp")
        assert c.get("/account/totp").headers["location"] == "/login"
        r = c.post("/login/totp", data={"code": code_from(secret), "csrf": "wrong"})
        assert r.status_code == 403
        r = c.post("/login/totp", data={"code": code_from(secret), "csrf": c.cookies["vigil_csrf"]})
        assert r.status_code == 303 and r.headers["location"] == "/" and r.cookies["vigil_session"]
    with server.client() as c:
        c.get("/login")
        r = c.post("/login/totp", data={"code": code_from(secret, 2), "csrf": c.cookies["vigil_csrf"]})
        assert r.status_code == 303 and r.headers["location"].startswith("/login?error=")  # no password, no step


def code_from(secret: str, steps_ahead: int = 1) -> str:
    return pyotp.TOTP(secret).at(datetime.now(UTC) + timedelta(seconds=30 * steps_ahead))


def test_a_disabled_account_is_enabled_again_over_the_api(sqlite_server: VigilServer) -> None:
    """The lookup hid disabled accounts, so PATCH {"disabled": false} answered 404: disabling was one-way."""
    server = sqlite_server
    make_user(server, "erin")
    with admin(server) as c:
        assert c.patch("/api/users/erin", json={"disabled": True}).status_code == 200
        with server.client() as anon:
            assert login(anon, "erin", PASSWORD).status_code == 401
        assert c.put("/api/users/erin/password", json={"password": "brass lanterns at low tide"}).status_code == 200
        r = c.patch("/api/users/erin", json={"disabled": False})
        assert r.status_code == 200, r.text
        assert r.json() == {"username": "erin", "disabled": False}
        assert c.patch("/api/users/nobody", json={"disabled": False}).status_code == 404
    assert token_of_password(server, "erin", "brass lanterns at low tide")
