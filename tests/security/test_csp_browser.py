"""The portal under its strict CSP in a real browser: no page reports a violation, and the moved JS still works."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from tests.e2e.conftest import chromium  # noqa: F401  (the fixture)
from tests.integration.server.rbac_support import enroll_with_alert
from tests.support import VigilServer

pytestmark = pytest.mark.browser

# Recorded before any page script runs (DevTools injects it, so the page's CSP does not apply to it).
RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__csp.push(e.violatedDirective + " " + (e.blockedURI || "inline")));
"""


def _violations(page: Page) -> list[str]:
    return list(page.evaluate("window.__csp || []"))


def _pages(server: VigilServer) -> dict[str, str]:
    dev = enroll_with_alert(server, "csp-host")
    with server.client(server.admin_token()) as c:
        alert = c.get("/api/alerts").json()["value"][0]["id"]
        incident = c.get("/api/incidents").json()["value"][0]["incidentId"]
    return {"device": f"/devices/{dev['device_id']}", "alert": f"/alerts/{alert}",
            "incident": f"/incidents/{incident}"}


def test_portal_pages_report_no_csp_violation_and_their_scripts_work(
    sqlite_server: VigilServer, chromium: Browser,  # noqa: F811
) -> None:
    server = sqlite_server
    ids = _pages(server)
    context = chromium.new_context(base_url=server.url, viewport={"width": 1400, "height": 1000})
    context.add_init_script(RECORD_VIOLATIONS)
    page = context.new_page()
    console: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        if "Content Security Policy" in msg.text or "Refused to" in msg.text:
            console.append(msg.text)

    page.on("console", on_console)
    seen: dict[str, Any] = {}
    try:
        page.goto("/login")
        seen["/login"] = _violations(page)
        page.get_by_label("User name").fill("admin")
        page.get_by_label("Password").fill(server.admin_password)
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(f"{server.url}/")
        for path in ["/", "/devices", ids["device"], "/alerts", ids["alert"], "/incidents", ids["incident"],
                     "/actioncenter", "/plan", "/audit", "/account", "/account/totp"]:
            response = page.goto(path)
            assert response is not None and response.status == 200, path
            page.wait_for_load_state("load")
            seen[path] = _violations(page)

        # data-open-dialog / data-close-dialog (were onclick= handlers): open a response action's dialog, cancel it.
        page.goto(ids["device"])
        page.get_by_role("button", name="Isolate device").click()
        dialog = page.locator("dialog[open]")
        expect(dialog).to_be_visible()
        dialog.get_by_role("button", name="Cancel").click()
        expect(page.locator("dialog[open]")).to_have_count(0)
        # data-autosubmit (was onchange=): choosing a filter reloads the queue filtered.
        page.goto("/alerts")
        page.get_by_label("Severity").select_option("High")
        expect(page).to_have_url(f"{server.url}/alerts?status=&severity=High&q=")
        seen["clicks"] = _violations(page)
        assert {k: v for k, v in seen.items() if v} == {} and console == []

        # The listener is not blind: an injected inline script is refused, reported and never runs.
        page.evaluate("""() => { const s = document.createElement("script");
                                 s.textContent = "window.__ran = true"; document.body.append(s); }""")
        page.wait_for_timeout(200)
        assert page.evaluate("window.__ran === undefined")
        assert any(v.startswith("script-src") for v in _violations(page)), _violations(page)
    finally:
        context.close()
