"""The investigation pages: the list, the evidence graph drawn with each entity's verdict, the reasons, and a
pending remediation approved from the page (through the action center's decision)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e import portal_seed
from tests.integration.air.test_investigations_api import _events
from tests.support import VigilServer, post_batch

pytestmark = pytest.mark.browser
DOCS = Path(__file__).resolve().parents[2] / "docs" / "portal"


def test_investigation_page_draws_the_evidence_and_approves(sqlite_server: VigilServer, chromium: Browser) -> None:
    server, base = sqlite_server, sqlite_server.url
    [dev] = portal_seed.enroll(server, ["air-web-01.corp.example"])
    did = dev["device_id"]
    assert post_batch(server, dev["credential"], _events(did, 100)).status_code == 200
    with server.client(server.admin_token()) as c:
        assert c.put("/api/machinegroups/Ungrouped devices (default)",
                     json={"automationLevel": "SemiRemediation"}).status_code == 200
        inv = c.post(f"/api/machines/{did}/startInvestigation", json={}).json()
    assert inv["state"] == "PendingApproval"
    context = chromium.new_context(base_url=base, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        portal_seed.sign_in(page, "admin", server.admin_password)
        page.get_by_role("link", name="Investigations").click()
        page.locator("#investigations").get_by_role("link", name=inv["id"], exact=True).click()
        expect(page).to_have_url(f"{base}/investigations/{inv['id']}")
        graph = page.locator("#evidence-graph")
        expect(graph.locator("g.node")).to_have_count(len(inv["entities"]))
        expect(graph.locator(f"g.node[data-key='file:{did}:/tmp/dropper']")).to_have_attribute(
            "data-verdict", "Malicious")
        expect(graph.locator("line").first).to_be_attached()
        expect(page.locator("#verdicts")).to_contain_text("Sigma alert: Execution From a World-Writable")
        page.screenshot(path=str(DOCS / "investigation.png"), full_page=True)
        row = page.locator("#remediations tr[data-kind='QuarantineFile']")
        expect(row).to_contain_text("PendingApproval")
        row.get_by_role("button", name="Approve").click()
        expect(page).to_have_url(f"{base}/investigations/{inv['id']}")
        expect(page.locator("#remediations tr[data-kind='QuarantineFile']")).to_contain_text("Running")
        expect(page.locator("#remediations").get_by_role("button", name="Approve")).to_have_count(0)
        page.goto("/investigations?state=Running")
        expect(page.locator("#investigations tr[data-id]")).to_have_count(1)
        page.goto("/investigations?state=NoThreatsFound")
        expect(page.locator("#investigations tr[data-id]")).to_have_count(0)
    finally:
        context.close()
