"""The expert case pages in RBAC mode: a Tier 1 analyst asks from the portal, the outside expert (read-only, no
device groups) finds the case under Experts, sees its device's alert and nothing else, and answers with a hunting
query and recommended actions, which the analyst then reads."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e import portal_seed
from tests.integration.air.test_experts_api import EXPERT, TIER1
from tests.integration.server.rbac_support import PASSWORD, admin, enroll_with_alert, groups_a_and_b, make_user
from tests.support import VigilServer

pytestmark = pytest.mark.browser


def test_ask_open_and_answer_an_expert_case(sqlite_server: VigilServer, chromium: Browser) -> None:
    srv = sqlite_server
    a = enroll_with_alert(srv, "a-web-01.corp.test")
    b = enroll_with_alert(srv, "b-db-01.corp.test")
    with admin(srv) as c:
        groups_a_and_b(c)
        assert c.put("/api/roles/tier1", json={"permissions": TIER1, "userGroups": ["ug-tier1"]}).status_code == 200
        assert c.put("/api/roles/cdoc", json={"permissions": EXPERT, "userGroups": ["CDOC Tier 3"]}
                     ).status_code == 200
        assert c.post("/api/rbac/mode", json={"mode": "rbac"}).status_code == 200
        alert = c.get("/api/alerts", params={"machineId": a["device_id"]}).json()["value"][0]
        b_alert = c.get("/api/alerts", params={"machineId": b["device_id"]}).json()["value"][0]
    make_user(srv, "tina", groups=("ug-a", "ug-tier1"))
    make_user(srv, "mssp", groups=("CDOC Tier 3",))
    context = chromium.new_context(base_url=srv.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        portal_seed.sign_in(page, "tina", PASSWORD)
        page.get_by_role("link", name="Experts").click()
        expect(page).to_have_url(f"{srv.url}/experts")
        form = page.locator("#ask")
        # A group that does not exist is refused, naming the field.
        form.get_by_label("Id", exact=True).fill(alert["id"])
        form.get_by_label("Expert group").fill("Nobody")
        form.get_by_label("Question").fill("Is this marker benign?")
        form.get_by_role("button", name="Ask").click()
        expect(page.locator("body")).to_contain_text("expertGroup")
        page.goto("/experts")
        form.get_by_label("Id", exact=True).fill(alert["id"])
        form.get_by_label("Expert group").fill("CDOC Tier 3")
        form.get_by_label("Answer within (hours)").fill("4")
        form.get_by_label("Question").fill("Is this marker benign?")
        form.get_by_role("button", name="Ask").click()
        expect(page).to_have_url(f"{srv.url}/experts/1")
        expect(page.locator("#question")).to_have_text("Is this marker benign?")
        expect(page.locator("#answer-form")).to_have_count(0)  # only the expert group answers
        context.clear_cookies()

        portal_seed.sign_in(page, "mssp", PASSWORD)
        page.get_by_role("link", name="Experts").click()
        expect(page.locator("#cases tr[data-id]")).to_have_count(1)
        expect(page.locator("#ask")).to_have_count(0)  # a read-only expert does not ask
        page.locator("#cases").get_by_role("link", name="1", exact=True).click()
        expect(page.locator(f"#case-alerts tr[data-id='{alert['id']}']")).to_have_count(1)
        expect(page.locator(f"#case-alerts tr[data-id='{b_alert['id']}']")).to_have_count(0)
        # Outside the case the expert's account still sees no device.
        page.goto(f"/devices/{b['device_id']}")
        expect(page.locator("body")).not_to_contain_text("b-db-01")
        page.goto("/experts/1")
        answer = page.locator("#answer-form")
        answer.get_by_label("Answer", exact=True).fill("Benign: the detection test marker.")
        answer.get_by_label("Hunting queries (a blank line between two)").fill(
            "DeviceProcessEvents\n| where ProcessCommandLine has 'vigil-detection-test'\n\nDeviceInfo | take 1")
        answer.get_by_label("Recommended actions (one a line)").fill("Resolve the alert\nTag the device")
        answer.get_by_role("button", name="Answer").click()
        expect(page).to_have_url(f"{srv.url}/experts/1")
        context.clear_cookies()

        portal_seed.sign_in(page, "tina", PASSWORD)
        page.goto("/experts/1")
        expect(page.locator("#answer")).to_contain_text("Benign: the detection test marker.")
        expect(page.locator("#answer pre.query")).to_have_count(2)
        expect(page.locator("#recommended li")).to_have_text(["Resolve the alert", "Tag the device"])
        page.goto("/experts")
        expect(page.locator("#cases tr[data-id='1']")).to_have_attribute("data-status", "Answered")
    finally:
        context.close()
