"""The plan page in a real browser: a Stakeholder sees the plan, its overrides and ring progress, no devices."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e import portal_seed
from tests.integration.server.rbac_support import PASSWORD, admin, make_user
from tests.integration.server.test_plan import document
from tests.support import VigilServer

pytestmark = pytest.mark.browser


def test_a_stakeholder_sees_overrides_criteria_and_components_but_no_device(
    sqlite_server: VigilServer, chromium: object, tmp_path: Path
) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(chromium, Browser)
    server = sqlite_server
    with admin(server) as c:
        c.post("/api/plan/init", json={"organization": "ACME"})
        c.put("/api/plan", json={"document": document()})
        assert c.post("/api/plan/apply").status_code == 200
        r = c.post("/api/onboarding/packages", json={"group": "Ring – Pilot",
                                                     "override_reason": "Pilot lab rebuilt after incident 7"})
        assert r.status_code == 200, r.text
    make_user(server, "olga", groups=("business-stakeholders",))
    context = chromium.new_context(base_url=server.url, viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        portal_seed.sign_in(page, "olga", PASSWORD)
        page.wait_for_load_state()
        # Her only page is the plan: she lands on it, and the header links to it.
        expect(page).to_have_url(f"{server.url}/plan")
        expect(page.locator("header nav")).to_contain_text("Plan")
        expect(page.locator("#gate")).to_contain_text("Gated")
        expect(page.locator("#overrides")).to_contain_text("Pilot lab rebuilt after incident 7")
        expect(page.locator("#overrides")).to_contain_text("Onboarding before sign-off")
        expect(page.locator("#overrides")).to_contain_text("Ring – Pilot")
        rows = page.locator("#ring-components tbody tr")
        expect(rows).to_have_count(3)
        expect(rows.first).to_contain_text("Evaluate")
        expect(page.locator("#ring-components thead")).to_contain_text("TVM")
        expect(page.locator("#ring-components thead")).not_to_contain_text("TVM (not built yet)")  # built now
        expect(page.locator("#criteria")).to_contain_text("Target devices")
        page.screenshot(path=str(tmp_path / "plan-stakeholder.png"), full_page=True)
        response = page.goto("/devices")
        assert response is not None and response.status == 403
    finally:
        context.close()
