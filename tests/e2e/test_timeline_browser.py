"""The device timeline in Chromium: each table's own columns, time range and ActionType filters, server-side
paging, and the device's alerts and incidents listed on its page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e import portal_seed
from tests.support import VigilServer, post_batch, process_event

pytestmark = pytest.mark.browser
DOCS = Path(__file__).resolve().parents[2] / "docs" / "portal"
HOST = "timeline-07.corp.example"


def _ts(minutes_ago: int) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_timeline_columns_filters_and_paging(sqlite_server: VigilServer, chromium: Browser) -> None:
    server, base = sqlite_server, sqlite_server.url
    [dev] = portal_seed.enroll(server, [HOST])
    did = dev["device_id"]
    events = [process_event(did, i + 1, DeviceName=HOST, Timestamp=_ts(10 + i), ProcessCommandLine=f"/bin/job --n {i}",
                            FileName="job", InitiatingProcessFileName="cron", InitiatingProcessId=77)
              for i in range(150)]
    events.append({"table": "DeviceNetworkEvents", "Timestamp": _ts(5), "DeviceId": did, "DeviceName": HOST,
                   "ActionType": "ConnectionSuccess", "ReportId": 9001, "RemoteIP": "203.0.113.45", "RemotePort": 8443,
                   "LocalIP": "10.0.0.7", "LocalPort": 51234, "Protocol": "Tcp", "InitiatingProcessFileName": "curl",
                   "InitiatingProcessId": 4321})
    events.append(process_event(did, 9002, DeviceName=HOST, Timestamp=_ts(3 * 24 * 60), ActionType="ProcessCreated",
                                ProcessCommandLine="/usr/bin/old-task", FileName="old-task"))
    r = post_batch(server, dev["credential"], events)
    assert r.status_code == 200, r.text
    portal_seed.alerts(server, [(did, "Suspicious job on timeline host", "High", 0)])

    context = chromium.new_context(base_url=base, viewport={"width": 1400, "height": 900})
    page = context.new_page()
    try:
        portal_seed.sign_in(page, "admin", server.admin_password)
        page.goto(f"/devices/{did}")
        expect(page.locator("#device-alerts")).to_contain_text("Suspicious job on timeline host")
        expect(page.locator("#device-alerts a[href^='/incidents/']")).to_have_count(1)

        timeline = page.locator("#timeline")
        expect(timeline.locator("tbody tr")).to_have_count(100)  # one page, not every event
        expect(timeline.locator("thead")).to_contain_text("Command line")
        expect(timeline.get_by_text("/bin/job --n 0", exact=True)).to_be_visible()
        page.screenshot(path=str(DOCS / "timeline.png"))
        page.locator("#timeline-pager").get_by_role("link", name="Older →").click()
        expect(timeline.get_by_text("/bin/job --n 100", exact=True)).to_be_visible()
        expect(timeline.get_by_text("/bin/job --n 0", exact=True)).to_have_count(0)
        expect(timeline.locator("tbody tr")).to_have_count(51)  # the 150th and the 3-day-old one
        expect(page.locator("#timeline-pager").get_by_role("link", name="Older →")).to_have_count(0)

        # The network view has the network table's own columns.
        page.get_by_label("Events").select_option("DeviceNetworkEvents")
        expect(timeline.locator("thead")).to_contain_text("Remote IP")
        expect(timeline.locator("thead")).not_to_contain_text("Command line")
        row = timeline.locator("tbody tr").first
        expect(row).to_contain_text("203.0.113.45")
        expect(row).to_contain_text("8443")
        expect(row).to_contain_text("curl")
        expect(row).not_to_contain_text("DeviceNetworkEvents")

        # A time range of 24 hours leaves the three-day-old process out; 7 days brings it back.
        page.get_by_label("Events").select_option("DeviceProcessEvents")
        page.get_by_label("Action type").select_option("ProcessCreated")
        page.get_by_label("Time range").select_option("24h")
        page.locator("#timeline-pager").get_by_role("link", name="Older →").click()
        expect(timeline.get_by_text("/usr/bin/old-task", exact=True)).to_have_count(0)
        page.get_by_label("Time range").select_option("7d")
        page.locator("#timeline-pager").get_by_role("link", name="Older →").click()
        expect(timeline.get_by_text("/usr/bin/old-task", exact=True)).to_be_visible()

        r2 = page.goto(f"/devices/{did}?range=forever")
        assert r2 is not None and r2.status == 422
        expect(page.get_by_role("alert")).to_contain_text("forever")
    finally:
        context.close()
