"""Single sign-on through a real OpenID Connect provider (npm's oidc-provider), against a real server."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from tests.integration.server.rbac_support import admin
from tests.oidc_support import OidcProvider, configure, oidc_toml, provider_login
from tests.support import VigilServer
from vigil.core.rbac import Permission

TIER1 = {Permission.VIEW_DATA_SECOPS, Permission.ALERTS_INVESTIGATION}
TIER3 = {*TIER1, Permission.MANAGE_SECURITY_SETTINGS, Permission.MANAGE_PORTAL_SETTINGS}
GROUP_MAP = {"soc-analysts": ["SOC Tier 1"], "soc-leads": ["SOC Tier 3"]}


@dataclass
class Sso:
    server: VigilServer
    idp: OidcProvider


@pytest.fixture
def sso(tmp_path: Path, oidc_provider_installed: None) -> Iterator[Sso]:
    server = VigilServer.create(tmp_path / "server", "")
    idp = OidcProvider(tmp_path / "idp", f"{server.url}/login/oidc/callback")
    idp.start()
    try:
        (server.data_dir / "vigil.toml").write_text(
            (server.data_dir / "vigil.toml").read_text() + oidc_toml(idp, group_map=GROUP_MAP))
        server.start()
        try:
            yield Sso(server, idp)
        finally:
            server.stop()
    finally:
        idp.stop()


def rbac_with_tiers(server: VigilServer) -> None:
    with admin(server) as c:
        for role, perms, group in [("tier1", TIER1, "SOC Tier 1"), ("tier3", TIER3, "SOC Tier 3")]:
            r = c.put(f"/api/roles/{role}", json={"permissions": sorted(p.value for p in perms), "userGroups": [group]})
            assert r.status_code == 200, r.text
        assert c.post("/api/rbac/mode", json={"mode": "rbac"}).status_code == 200


def start(browser: httpx.Client) -> str:
    r = browser.get("/login/oidc")
    assert r.status_code == 303, r.text
    return r.headers["location"]


def callback(browser: httpx.Client, url: str) -> httpx.Response:
    parts = urlsplit(url)
    return browser.get(f"{parts.path}?{parts.query}")


def sign_in(sso: Sso, browser: httpx.Client, login: str) -> httpx.Response:
    return callback(browser, provider_login(sso.idp, start(browser), login))


def refusal(r: httpx.Response) -> str:
    """The message the login page will show for a refused sign-in."""
    assert r.status_code == 303, r.text
    location = r.headers["location"]
    assert location.startswith("/login?error=")
    return unquote(location.split("=", 1)[1])


def last_audit(server: VigilServer, action: str) -> dict[str, Any]:
    """The newest single sign-on entry of ``action`` (the admin's own password sign-ins are skipped)."""
    with admin(server) as c:
        entries = c.get("/api/audit", params={"action": action}).json()["value"]
    return dict(next(e for e in entries if e["after"].get("method") == "oidc"))


def last_failure(server: VigilServer) -> dict[str, Any]:
    return last_audit(server, "user.sign_in_failed")


def me(browser: httpx.Client) -> httpx.Response:
    return browser.get("/api/auth/me")


def test_sign_in_opens_a_session_with_the_permissions_of_the_mapped_groups(sso: Sso) -> None:
    rbac_with_tiers(sso.server)
    sso.idp.set_account("alice", email="alice@example.org", groups=["soc-analysts", "unmapped-group"])
    with sso.server.client() as browser:
        login_page = browser.get("/login")
        assert "Sign in with Test IdP" in login_page.text
        csrf_before = browser.cookies.get("vigil_csrf")
        r = sign_in(sso, browser, "alice")
        assert r.status_code == 200 and 'url=/"' in r.text  # a same-site hop, so the Strict cookie is sent
        assert browser.cookies.get("vigil_csrf") not in (None, csrf_before)  # rotated at sign-in
        who = me(browser).json()
        assert (who["username"], who["email"], who["source"]) == ("alice", "alice@example.org", "oidc")
        assert set(who["permissions"]) == {p.value for p in TIER1}
        assert browser.get("/devices").status_code == 200
        # The flow is single use: replaying the provider's answer finds no flow and is refused.
        assert browser.cookies.get("vigil_oidc") is None
    entry = last_audit(sso.server, "user.sign_in")
    assert entry["actor"] == "alice" and entry["source_ip"] == "127.0.0.1"
    assert entry["after"]["userGroups"] == ["SOC Tier 1"]
    assert entry["after"]["idpGroups"] == ["soc-analysts", "unmapped-group"]


def test_each_sign_in_is_a_fresh_session_and_a_replayed_response_is_refused(sso: Sso) -> None:
    sso.idp.set_account("alice", groups=[])
    with sso.server.client() as browser:
        assert sign_in(sso, browser, "alice").status_code == 200
        first = browser.cookies.get("vigil_session")
        url = provider_login(sso.idp, start(browser), "alice")
        assert callback(browser, url).status_code == 200
        second = browser.cookies.get("vigil_session")
        assert first and second and first != second
        assert "did not start a sign-in" in refusal(callback(browser, url))  # the flow was used up
        assert me(browser).status_code == 200  # a refused replay does not end the session it came with
    with sso.server.client() as old:
        old.cookies.set("vigil_session", str(first))
        assert me(old).status_code == 401  # the session the browser brought along was ended
    with sso.server.client() as other:
        assert "did not start a sign-in" in refusal(callback(other, url))  # another browser has no flow at all
    assert last_failure(sso.server)["after"]["reason"] == "bad_state"


def test_a_group_change_at_the_provider_changes_vigil_groups_at_the_next_sign_in(sso: Sso) -> None:
    rbac_with_tiers(sso.server)
    sso.idp.set_account("alice", groups=["soc-analysts"])
    with sso.server.client() as browser:
        assert sign_in(sso, browser, "alice").status_code == 200
        assert set(me(browser).json()["permissions"]) == {p.value for p in TIER1}
    with admin(sso.server) as c:  # a membership given in Vigil is not the IdP's to take away
        assert c.put("/api/usergroups/Local extras/members/alice").status_code == 200
    sso.idp.set_account("alice", groups=["soc-leads"])
    with sso.server.client() as browser:
        assert sign_in(sso, browser, "alice").status_code == 200
        assert set(me(browser).json()["permissions"]) == {p.value for p in TIER3}
    assert last_audit(sso.server, "user.sign_in")["after"]["userGroups"] == ["SOC Tier 3"]
    with admin(sso.server) as c:
        users = {u["username"]: u for u in c.get("/api/users").json()["value"]}
    assert sorted(users["alice"]["userGroups"]) == ["Local extras", "SOC Tier 3"]
    sso.idp.set_account("alice", groups=[])
    with sso.server.client() as browser:
        assert sign_in(sso, browser, "alice").status_code == 200
        assert me(browser).json()["permissions"] == []  # RBAC mode, no role: signed in, but sees nothing


def test_a_tampered_state_is_refused_and_audited(sso: Sso) -> None:
    sso.idp.set_account("mallory", groups=["soc-leads"])
    with sso.server.client() as browser:
        url = provider_login(sso.idp, start(browser), "mallory")
        parts = urlsplit(url)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        query["state"] = query["state"][:-2] + "xx"
        message = refusal(callback(browser, urlunsplit(parts._replace(query=urlencode(query)))))
        assert "does not belong to this browser" in message
        assert me(browser).status_code == 401
    assert last_failure(sso.server)["after"]["reason"] == "bad_state"


def test_an_id_token_with_another_nonce_is_refused(sso: Sso) -> None:
    sso.idp.set_account("mallory", groups=["soc-leads"])
    with sso.server.client() as browser:
        authorize = urlsplit(start(browser))
        query = {k: v[0] for k, v in parse_qs(authorize.query).items()}
        query["nonce"] = "a-nonce-from-another-sign-in"  # as if the ID token were replayed from elsewhere
        url = provider_login(sso.idp, urlunsplit(authorize._replace(query=urlencode(query))), "mallory")
        message = refusal(callback(browser, url))
        assert "ID token is not valid" in message and "nonce" in message
        assert me(browser).status_code == 401
    failure = last_failure(sso.server)
    assert failure["after"]["reason"] == "bad_token" and "nonce" in failure["after"]["detail"]


@pytest.mark.parametrize(("fault", "named"), [
    ({"aud": "some-other-app"}, "aud"),
    ({"exp_offset": -3600}, "expired"),
    ({"foreign_key": True}, "signature"),
], ids=["another-audience", "expired", "unpublished-key"])
def test_a_bad_id_token_from_the_provider_is_refused_and_audited(sso: Sso, fault: dict[str, Any], named: str) -> None:
    sso.idp.set_account("mallory", groups=["soc-leads"])
    sso.idp.fault(**fault)
    with sso.server.client() as browser:
        message = refusal(sign_in(sso, browser, "mallory"))
        assert "ID token is not valid" in message and named in message.lower()
        assert me(browser).status_code == 401
    failure = last_failure(sso.server)
    assert failure["after"]["reason"] == "bad_token" and failure["source_ip"] == "127.0.0.1"
    with admin(sso.server) as c:
        assert "mallory" not in str(c.get("/api/users").json())  # nobody was created


def test_a_provider_that_is_down_gives_a_clear_message(sso: Sso) -> None:
    sso.idp.stop()
    with sso.server.client() as browser:
        message = refusal(browser.get("/login/oidc"))
        assert message.startswith("Sign-in with Test IdP failed: the identity provider did not answer")
        page = browser.get("/login", params={"error": message})
        assert "the identity provider did not answer" in page.text
    assert last_failure(sso.server)["after"]["reason"] == "provider_unavailable"


def test_users_the_settings_do_not_allow_are_refused(sso: Sso) -> None:
    configure(sso.server, sso.idp, group_map=GROUP_MAP, require_mapped_group=True)
    sso.idp.set_account("bob", groups=["marketing"])
    with sso.server.client() as browser:
        assert "in no identity-provider group" in refusal(sign_in(sso, browser, "bob"))
    assert last_failure(sso.server)["after"]["reason"] == "user_not_allowed"
    assert last_failure(sso.server)["actor"] == "bob"

    sso.idp.set_account("carol", groups=["soc-analysts"])
    with sso.server.client() as browser:
        assert sign_in(sso, browser, "carol").status_code == 200
    with admin(sso.server) as c:
        assert c.patch("/api/users/carol", json={"disabled": True}).status_code == 200
    with sso.server.client() as browser:
        assert "carol is disabled" in refusal(sign_in(sso, browser, "carol"))

    configure(sso.server, sso.idp, group_map=GROUP_MAP, create_users=False)
    sso.idp.set_account("dave", groups=["soc-analysts"])
    with sso.server.client() as browser:
        assert "has no Vigil account" in refusal(sign_in(sso, browser, "dave"))
    assert last_failure(sso.server)["after"]["reason"] == "user_not_allowed"
