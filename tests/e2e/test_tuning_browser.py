"""From the portal in Chromium: create a suppression rule, and a device group after previewing what it takes."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e import portal_seed
from tests.support import VigilServer

pytestmark = pytest.mark.browser


def test_create_a_suppression_rule_and_a_device_group(sqlite_server: VigilServer, chromium: Browser) -> None:
    server = sqlite_server
    portal_seed.enroll(server, ["web-01.corp.example", "db-01.corp.example"])
    context = chromium.new_context(base_url=server.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        portal_seed.sign_in(page, "admin", server.admin_password)
        page.locator("header nav").get_by_role("link", name="Settings").click()
        page.locator("#settings").get_by_role("link", name="Suppression rules").click()
        form = page.locator("#new-suppression")
        form.get_by_label("Alert title").fill("Backup agent runs tar")
        form.get_by_label("Action").select_option("Resolve")
        form.get_by_label("Condition 1", exact=True).select_option("FileName")
        form.get_by_label("Value 1", exact=True).fill("tar")
        form.get_by_label("Comment").fill("nightly backup")
        form.get_by_role("button", name="Create rule").click()
        row = page.locator("#suppression-rules tbody tr").filter(has_text="Backup agent runs tar")
        expect(row).to_contain_text("FileName = tar")
        expect(row.locator(".state")).to_have_text("Enabled")
        row.get_by_role("button", name="Disable").click()
        expect(page.locator("#suppression-rules tbody tr").first.locator(".state")).to_have_text("Disabled")

        page.goto("/machinegroups")
        form = page.locator("#group-form")
        form.get_by_label("Name", exact=True).fill("Web servers")
        form.get_by_label("Operator 1").select_option("startsWith")
        form.get_by_label("Value 1").fill("web-")
        form.get_by_role("button", name="Preview").click()
        expect(page.locator("#group-preview")).to_contain_text("web-01.corp.example")
        expect(page.locator("#group-preview")).not_to_contain_text("db-01")
        page.locator("#group-form").get_by_role("button", name="Save group").click()
        expect(page.locator("#device-groups tr[data-name='Web servers']")).to_contain_text("name startsWith web-")
        expect(page.locator("#device-groups tr[data-name='Web servers'] td").last).to_have_text("1")
    finally:
        context.close()
