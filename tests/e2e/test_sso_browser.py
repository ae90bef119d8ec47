"""Single sign-on in a real browser: the login page's button, the provider's own sign-in form, back to Vigil."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.integration.server.rbac_support import admin
from tests.oidc_support import OidcProvider, configure
from tests.support import VigilServer
from vigil.core.rbac import Permission

pytestmark = pytest.mark.browser


@pytest.fixture
def idp(sqlite_server: VigilServer, tmp_path: Path, oidc_provider_installed: None) -> Iterator[OidcProvider]:
    provider = OidcProvider(tmp_path / "idp", f"{sqlite_server.url}/login/oidc/callback")
    provider.start()
    try:
        configure(sqlite_server, provider, group_map={"soc-analysts": ["SOC Tier 1"]})
        yield provider
    finally:
        provider.stop()


def sign_in_at_provider(page: Page, server: VigilServer, idp: OidcProvider, login: str) -> None:
    """From Vigil's login page through the provider's own (development) sign-in form, on its origin."""
    page.goto(f"{server.url}/login")
    page.get_by_role("button", name="Sign in with Test IdP").click()
    page.wait_for_url(f"{idp.issuer}/**")
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "any password")
    page.get_by_role("button", name="Sign-in").click()


def test_sign_in_with_the_identity_provider_lands_signed_in_with_the_mapped_role(
    sqlite_server: VigilServer, idp: OidcProvider, chromium: Browser,
) -> None:
    with admin(sqlite_server) as c:
        perms = sorted(p.value for p in (Permission.VIEW_DATA_SECOPS, Permission.ALERTS_INVESTIGATION))
        assert c.put("/api/roles/tier1", json={"permissions": perms, "userGroups": ["SOC Tier 1"]}).status_code == 200
        assert c.post("/api/rbac/mode", json={"mode": "rbac"}).status_code == 200
    idp.set_account("alice", email="alice@example.org", groups=["soc-analysts"])
    page = chromium.new_page()
    sign_in_at_provider(page, sqlite_server, idp, "alice")
    # Back at Vigil with a session: the SameSite=Strict cookie must survive the cross-site return.
    page.wait_for_url(f"{sqlite_server.url}/")
    expect(page.locator("body")).to_contain_text("alice")
    page.goto(f"{sqlite_server.url}/api/auth/me")
    me = json.loads(page.locator("body").inner_text())
    assert me["username"] == "alice" and set(me["permissions"]) == set(perms)

    # Refused sign-ins come back to the login page with the reason.
    idp.fault(aud="some-other-app")
    page.context.clear_cookies()
    sign_in_at_provider(page, sqlite_server, idp, "alice")
    page.wait_for_url(f"{sqlite_server.url}/login?error=*")
    expect(page.get_by_role("alert")).to_contain_text("Sign-in with Test IdP failed: the ID token is not valid")
    page.close()
