"""An analyst in Chromium: kill a process from an alert's evidence row, then resolve the alert's incident."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e import portal_seed
from tests.integration.server.test_portal_response import EVIDENCE
from tests.support import VigilServer

pytestmark = pytest.mark.browser


def test_kill_from_evidence_and_resolve_the_incident(sqlite_server: VigilServer, chromium: Browser) -> None:
    server = sqlite_server
    [dev] = portal_seed.enroll(server, ["resp-03.corp.example"])
    portal_seed.alerts(server, [(dev["device_id"], "Beacon from /tmp", "High", 0)], evidence=EVIDENCE)
    context = chromium.new_context(base_url=server.url, viewport={"width": 1400, "height": 900})
    page = context.new_page()
    try:
        portal_seed.sign_in(page, "admin", server.admin_password)
        page.goto("/alerts")
        page.get_by_role("link", name="Beacon from /tmp").click()
        row = page.locator("#evidence tbody tr").first
        row.get_by_role("button", name="Kill process").click()
        dialog = page.locator("dialog[open]")
        expect(dialog).to_contain_text("PID 4242 (/tmp/p7f3a --beacon)")
        dialog.get_by_label("Comment").fill("stop the beacon")
        dialog.get_by_role("button", name="Confirm").click()
        expect(page).to_have_url(f"{server.url}/actioncenter")
        expect(page.locator("#actions tbody tr").filter(has_text="KillProcess")).to_contain_text("stop the beacon")

        page.goto("/alerts")
        page.get_by_role("link", name="Beacon from /tmp").click()
        page.locator("dl a[href^='/incidents/']").click()
        form = page.locator("#manage-incident")
        form.get_by_label("Status").select_option("Resolved")
        form.get_by_label("Assign to me").check()
        form.get_by_role("button", name="Save").click()
        facts = page.locator("section.facts")
        expect(facts).to_contain_text("Resolved")
        expect(facts).to_contain_text("admin")
    finally:
        context.close()
