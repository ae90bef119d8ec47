"""Errors for people: HTML error pages in the portal (403 names the missing permission, 404 links home), JSON for
/api, and a user who may see little lands on a page they may see."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.portal_seed import sign_in
from tests.integration.server.rbac_support import PASSWORD, admin, make_user
from tests.support import VigilServer

pytestmark = pytest.mark.browser


def test_error_pages_for_people_and_json_for_the_api(sqlite_server: VigilServer, chromium: Browser) -> None:
    server, base = sqlite_server, sqlite_server.url
    make_user(server, "erin")  # read-only (basic mode): View data, nothing to manage
    context = chromium.new_context(base_url=base, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        sign_in(page, "erin", PASSWORD)
        expect(page).to_have_url(f"{base}/")
        nav = page.locator("header nav")
        expect(nav.get_by_role("link", name="Devices")).to_be_visible()
        expect(nav.get_by_role("link", name="Audit log")).to_have_count(0)  # not offered: it would refuse

        r = page.goto("/audit")
        assert r is not None and r.status == 403
        assert "text/html" in r.headers["content-type"]
        expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
        expect(page.locator("#missing-permission")).to_have_text("Manage portal system settings")
        page.locator("#home-link").click()
        expect(page).to_have_url(f"{base}/")  # the dashboard: read-only users see it

        r = page.goto("/no-such-page")
        assert r is not None and r.status == 404 and "text/html" in r.headers["content-type"]
        expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
        expect(page.get_by_role("alert")).to_contain_text("/no-such-page")
        r = page.goto("/devices/no-such-device")
        assert r is not None and r.status == 404
        expect(page.locator("#error")).to_have_attribute("data-error", "not_found")

        # /api answers JSON whatever the browser accepts.
        r = page.goto("/api/no-such-route")
        assert r is not None and r.status == 404 and r.headers["content-type"].startswith("application/json")
        r = page.goto("/api/audit")
        assert r is not None and r.status == 403 and r.json()["error"] == "forbidden"
    finally:
        context.close()

    # RBAC mode: a user with no role may see no device data; signing in lands on their account page, not a 403.
    with admin(server) as c:
        assert c.post("/api/rbac/mode", json={"mode": "rbac"}).status_code == 200
    make_user(server, "reader")
    context = chromium.new_context(base_url=base, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        sign_in(page, "reader", PASSWORD)
        expect(page).to_have_url(f"{base}/account")
        expect(page.locator("header nav").get_by_role("link")).to_have_count(0)
        r = page.goto("/devices")
        assert r is not None and r.status == 403
        expect(page.locator("#missing-permission")).to_have_text("View data – Security operations")
        expect(page.locator("#error")).to_contain_text("you hold no permission")
        page.locator("#home-link").click()
        expect(page).to_have_url(f"{base}/account")
    finally:
        context.close()
