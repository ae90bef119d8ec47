"""A live-response session in Chromium with a real agent: start it from the device page, run a verb, and watch its
output arrive in the log without reloading the page."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e import portal_seed
from tests.e2e.agent_support import AgentProcess
from tests.support import VigilServer

pytestmark = [pytest.mark.browser, pytest.mark.root]


def test_a_live_response_session_in_the_portal(sqlite_server: VigilServer, agent: AgentProcess,
                                               chromium: Browser) -> None:
    server = sqlite_server
    context = chromium.new_context(base_url=server.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        portal_seed.sign_in(page, "admin", server.admin_password)
        expect(page.locator("header nav")).to_be_visible()
        page.goto(f"/devices/{agent.device_id}")
        page.get_by_role("link", name="Live response console").click()
        page.get_by_role("button", name="Start session").click()
        page.get_by_label("Command").fill("processes")
        page.get_by_role("button", name="Run").click()
        row = page.locator("#lr-log tbody tr").filter(has_text="processes")
        # No reload: the console's script fetches the log until the agent's answer is in it.
        expect(row.locator(".status")).to_have_text("Succeeded", timeout=60_000)
        expect(row.locator(".output")).to_contain_text("pid,ppid")
        page.get_by_label("Command").fill("help")
        page.get_by_role("button", name="Run").click()
        expect(page.locator("#lr-local")).to_contain_text("getfile")
        page.get_by_role("button", name="Close session").click()
        expect(page.get_by_role("button", name="Start session")).to_be_visible()
    finally:
        context.close()
