"""An analyst in a real browser: from an alert, isolate its device, watch pending → succeeded, release it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.agent_support import AgentProcess, require_root
from tests.e2e.test_alert_workflow_browser import CURL_SH, _sign_in
from tests.netns import netns_lab, require_netns
from tests.support import VigilServer, post_batch, process_event
from vigil.agent.actions.base import ISOLATION_NETNS_ENV

pytestmark = [pytest.mark.browser, pytest.mark.root]


def _confirm(page: Page, button: str, comment: str) -> None:
    page.get_by_role("button", name=button).click()
    dialog = page.locator("dialog[open]")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Comment").fill(comment)
    dialog.get_by_role("button", name="Confirm").click()


def test_isolate_from_an_alert_and_release(
    sqlite_server: VigilServer, chromium: Browser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_root()
    require_netns()
    server = sqlite_server
    with netns_lab() as lab:
        # The agent's real ruleset goes into the lab's endpoint namespace, never the host's.
        monkeypatch.setenv(ISOLATION_NETNS_ENV, lab.ep)
        agent = AgentProcess.enroll(server, tmp_path / "agent")
        agent.start()
        cred = (agent.state_dir / "identity.json").read_text()
        ev = process_event(agent.device_id, 1, ProcessCommandLine=CURL_SH, FileName="sh", FolderPath="/usr/bin/dash")
        assert post_batch(server, json.loads(cred)["credential"], [ev]).status_code == 200
        context = chromium.new_context(base_url=server.url, viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        try:
            _sign_in(page, server)
            page.locator("header nav").get_by_role("link", name="Alerts").click()
            page.locator("#alerts").get_by_role("link", name="Download Piped Into a Shell").click()
            page.locator("dl a[href^='/devices/']").click()  # the alert's device
            expect(page.get_by_role("heading", name="Response actions")).to_be_visible()
            _confirm(page, "Isolate device", "Contain: curl | sh on this host")
            expect(page).to_have_url(f"{server.url}/actioncenter")
            row = page.locator("#actions tbody tr").filter(has_text="Isolate")
            expect(row.locator(".status")).to_have_text("Pending")
            page.get_by_role("link", name="History").click()
            for _ in range(60):
                if page.locator("#actions tbody tr").filter(has_text="Isolate").filter(has_text="Succeeded").count():
                    break
                page.wait_for_timeout(1000)
                page.reload()
            expect(page.locator("#actions tbody tr").filter(has_text="Isolate").locator(".status")).to_have_text(
                "Succeeded")
            assert "vigil_isolation" in lab.nft_tables()
            page.screenshot(path=str(tmp_path / "action-center.png"), full_page=True)
            page.locator("#actions a[href^='/devices/']").first.click()
            _confirm(page, "Release from isolation", "Clean: payload removed")
            page.get_by_role("link", name="History").click()
            for _ in range(60):
                if page.locator("#actions tbody tr").filter(has_text="Unisolate").filter(has_text="Succeeded").count():
                    break
                page.wait_for_timeout(1000)
                page.reload()
            expect(page.locator("#actions tbody tr").filter(has_text="Unisolate").locator(".status")).to_have_text(
                "Succeeded")
            assert "vigil_isolation" not in lab.nft_tables()
        finally:
            context.close()
            agent.stop()
