"""From the portal in Chromium: the antivirus page lists the threats agents reported and each device's protection."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e import portal_seed
from tests.support import VigilServer, post_batch
from vigil.wire import HEARTBEAT_PATH

pytestmark = pytest.mark.browser


def test_antivirus_page_shows_threats_and_protection_state(sqlite_server: VigilServer, chromium: Browser) -> None:
    server = sqlite_server
    guarded, bare = portal_seed.enroll(server, ["web-01.corp.example", "db-01.corp.example"])
    detection = {"table": "DeviceEvents", "Timestamp": "2026-12-07T09:00:00Z", "DeviceId": guarded["device_id"],
                 "DeviceName": "web-01.corp.example", "ActionType": "AntivirusDetection", "ReportId": 1,
                 "FileName": "dropper", "FolderPath": "/tmp/dropper", "SHA256": "cd" * 32,
                 "AdditionalFields": {"ThreatName": "Trojan:Linux/Dropper", "ThreatType": "malware",
                                      "Severity": "high", "DetectionSource": "Real-time protection",
                                      "ActionTaken": "Blocked", "Mode": "block"}}
    assert post_batch(server, guarded["credential"], [detection]).status_code == 200
    state = {"engineVersion": "0.9", "definitionsVersion": 1733500000, "realTimeProtection": True, "mode": "block",
             "lastScans": {"quick": "2026-12-07T08:00:00Z"}}
    with server.client(guarded["credential"]) as c:
        assert c.post(HEARTBEAT_PATH, json={"agent_version": "0.9",
                                            "sensors": {"antivirus_state": json.dumps(state)}}).status_code == 200
    context = chromium.new_context(base_url=server.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        portal_seed.sign_in(page, "admin", server.admin_password)
        page.locator("header nav").get_by_role("link", name="Antivirus").click()
        expect(page.locator("h1")).to_have_text("Antivirus")
        row = page.locator("#threats tbody tr").first
        expect(row).to_contain_text("'Dropper' malware was prevented")
        expect(row).to_contain_text("/tmp/dropper")
        expect(row).to_contain_text("Blocked")
        expect(row).to_contain_text("web-01.corp.example")
        web = page.locator(f"#protection tr[data-id='{guarded['device_id']}']")
        expect(web).to_contain_text("On")
        expect(web).to_contain_text("Active")
        expect(web).to_contain_text("1733500000")
        expect(page.locator(f"#protection tr[data-id='{bare['device_id']}']")).to_contain_text("not reported")
        expect(page.locator("main")).to_contain_text("on for 1 of 2 devices")
        row.get_by_role("link", name="'Dropper' malware was prevented").click()
        expect(page.locator("h1")).to_contain_text("'Dropper' malware was prevented")

        # The policy form: the default policy goes passive with PUA audited; the change is stored and shown.
        page.goto("/antivirus")
        default = page.locator("#av-policies tr[data-group='default']")
        default.get_by_label("Mode of default").select_option("passive")
        default.get_by_label("PUA protection of default").select_option("audit")
        default.get_by_label("Action on malware in default").select_option("remove")
        default.get_by_label("Allowed threats of default").fill("PUA:Linux/Known")
        default.get_by_role("button", name="Save").click()
        default = page.locator("#av-policies tr[data-group='default']")
        expect(default.get_by_label("Mode of default")).to_have_value("passive")
        expect(default).to_contain_text('"pua_mode": "audit"')
        expect(default.locator("td").nth(1)).to_have_text("1")
        expect(default.get_by_label("Allowed threats of default")).to_have_value("PUA:Linux/Known")
    finally:
        context.close()
