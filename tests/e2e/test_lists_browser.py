"""Lists that scale, in Chromium: the device, alert, incident, action and audit lists page (50 rows), sort and
search on the server; the header's search box finds devices, alerts, incidents and users."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e import portal_seed
from tests.support import VigilServer

pytestmark = pytest.mark.browser


def test_devices_and_alerts_page_sort_and_search(sqlite_server: VigilServer, chromium: Browser) -> None:
    server, base = sqlite_server, sqlite_server.url
    devs = portal_seed.enroll(server, [f"node-{i:03d}.corp.example" for i in range(60)])
    portal_seed.alerts(server, [(d["device_id"], f"Rule {i:03d}", "High" if i == 7 else "Low", 0)
                                for i, d in enumerate(devs)])
    context = chromium.new_context(base_url=base, viewport={"width": 1400, "height": 900})
    page = context.new_page()
    try:
        portal_seed.sign_in(page, "admin", server.admin_password)

        page.goto("/devices")
        rows = page.locator("#devices tbody tr")
        expect(rows).to_have_count(50)
        expect(page.locator("#pager")).to_contain_text("Rows 1–50 of 60")
        expect(rows.first).to_contain_text("node-000.corp.example")
        page.locator("#pager").get_by_role("link", name="Next →").click()
        expect(rows).to_have_count(10)
        expect(rows.first).to_contain_text("node-050.corp.example")
        page.locator("#devices thead").get_by_role("link", name="Device name").click()  # now descending
        expect(rows.first).to_contain_text("node-059.corp.example")
        page.get_by_label("Search").fill("node-042")
        page.get_by_role("button", name="Search").click()
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("node-042.corp.example")

        page.goto("/alerts")
        alerts = page.locator("#alerts tbody tr")
        expect(alerts).to_have_count(50)
        page.locator("#alerts thead").get_by_role("link", name="Severity").click()
        page.locator("#alerts thead").get_by_role("link", name="Severity").click()  # descending: High first
        expect(alerts.first).to_contain_text("Rule 007")
        page.get_by_label("Search").fill("node-013")
        page.get_by_role("button", name="Search").click()
        expect(alerts).to_have_count(1)
        expect(alerts.first).to_contain_text("Rule 013")
        # Incidents: one per device (correlated by device); filter by severity, search by device name.
        page.goto("/incidents")
        incidents = page.locator("#incidents tbody tr")
        expect(incidents).to_have_count(50)
        page.get_by_label("Severity").select_option("High")
        expect(incidents).to_have_count(1)
        expect(incidents.first).to_contain_text("node-007.corp.example")
        page.goto("/incidents?q=node-013")
        expect(incidents).to_have_count(1)
        r = page.goto("/alerts?sort=nonsense")
        assert r is not None and r.status == 422

        # The action center and the audit log page too (55 scans queued: none has an agent to run it).
        with server.client(server.admin_token()) as c:
            for d in devs[:55]:
                assert c.post(f"/api/machines/{d['device_id']}/runAntiVirusScan",
                              json={"Comment": f"scan {d['device_id'][:6]}"}).status_code == 201
        page.goto("/actioncenter")
        actions = page.locator("#actions tbody tr")
        expect(actions).to_have_count(50)
        expect(page.locator("#pager")).to_contain_text("Rows 1–50 of 55")
        page.locator("#pager").get_by_role("link", name="Next →").click()
        expect(actions).to_have_count(5)
        page.goto("/actioncenter?q=node-042")
        expect(actions).to_have_count(1)
        page.goto("/audit")
        entries = page.locator("#audit tbody tr")
        expect(entries).to_have_count(50)
        expect(page.locator("#pager")).to_contain_text("Rows 1–50 of")
        page.get_by_label("Action").fill("machineaction.create")
        page.get_by_role("button", name="Filter").click()
        expect(page.locator("#pager")).to_contain_text("of 55")
        assert page.evaluate("document.documentElement.scrollWidth") <= 1400  # the table no longer runs off

        # The header's search box: several kinds of hit list, one lands on its page, a hash opens hunting.
        box = page.get_by_label("Find a device, alert, incident or user")
        box.fill("node-042")
        box.press("Enter")
        hits = page.locator("#search-hits tbody tr")
        expect(hits.filter(has_text="Device")).to_have_count(1)
        expect(hits.filter(has_text="Alert")).to_have_count(1)
        hits.filter(has_text="Device").get_by_role("link").click()
        expect(page).to_have_url(f"{base}/devices/{devs[42]['device_id']}")
        page.get_by_label("Find a device, alert, incident or user").fill("admin")
        page.get_by_label("Find a device, alert, incident or user").press("Enter")
        expect(page).to_have_url(f"{base}/users")
        page.goto("/search?q=" + "ab" * 32)
        expect(page.locator("#search-hunts")).to_contain_text("SHA-256")
        page.goto("/search?q=no-such-thing-anywhere")
        expect(page.locator("main")).to_contain_text("No device, alert, incident or user matches")
    finally:
        context.close()
