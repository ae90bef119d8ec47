"""The Prepare phase in a real browser: create a plan, complete it, sign as two SO stakeholders, see the gate open."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.server.rbac_support import PASSWORD, make_user
from tests.integration.server.test_plan import document
from tests.support import VigilServer

pytestmark = pytest.mark.browser


def sign_in(page: object, base: str, username: str, password: str) -> None:
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    page.goto("/login")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{base}/")


def test_create_plan_sign_as_two_stakeholders_and_the_gate_opens(
    sqlite_server: VigilServer, chromium: object, tmp_path: Path
) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(chromium, Browser)
    make_user(sqlite_server, "ada", email="ciso@acme.test")
    make_user(sqlite_server, "ben", email="cdoc@acme.test")
    base = sqlite_server.url
    context = chromium.new_context(base_url=base, viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        sign_in(page, base, "admin", sqlite_server.admin_password)
        page.get_by_role("link", name="Plan").click()
        page.get_by_label("Organization").fill("ACME")
        page.get_by_role("button", name="Create plan").click()
        expect(page.get_by_role("status")).to_contain_text("Plan created")
        expect(page.locator("#gate")).to_contain_text("Gated")
        expect(page.locator("#gaps")).to_contain_text("stakeholders[0].email")

        page.get_by_label("Plan document (YAML)").fill(document())
        page.get_by_role("button", name="Save new version").click()
        expect(page.get_by_role("status")).to_contain_text("Saved a new version")
        expect(page.locator("#plan-version")).to_have_text("2")
        expect(page.locator("#gaps")).to_have_count(0)
        expect(page.locator("#signoff")).to_contain_text("ciso@acme.test")
        page.screenshot(path=str(tmp_path / "plan-unsigned.png"), full_page=True)
        page.get_by_role("button", name="Sign out").click()

        for who, gate in (("ada", "Gated"), ("ben", "Open")):
            sign_in(page, base, who, PASSWORD)
            page.goto("/plan")
            page.get_by_role("button", name="Sign off version 2").click()
            expect(page.get_by_role("status")).to_contain_text(f"Signed off by {who}")
            expect(page.locator("#gate")).to_contain_text(gate)
            page.get_by_role("button", name="Sign out").click()

        sign_in(page, base, "admin", sqlite_server.admin_password)
        page.goto("/plan")
        expect(page.locator("#gate")).to_have_text("Open")
        expect(page.locator("#phase")).to_have_text("Onboard")
        expect(page.locator("#signoff")).not_to_contain_text("Pending")
        page.screenshot(path=str(tmp_path / "plan-signed.png"), full_page=True)
        page.get_by_role("link", name="Audit log").click()
        expect(page.locator("#audit")).to_contain_text("plan.signoff")
    finally:
        context.close()
