"""From the portal in Chromium: replay an ASR rule over posted telemetry, switch it to Block from the what-if page,
and create, import (a bad line reported) and delete indicators."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e import portal_seed
from tests.support import VigilServer, post_batch, process_event

pytestmark = pytest.mark.browser


def test_asr_rules_whatif_switch_and_indicators(sqlite_server: VigilServer, chromium: Browser,
                                                tmp_path: Path) -> None:
    server = sqlite_server
    [dev] = portal_seed.enroll(server, ["lab-01.corp.example"])
    event = process_event(dev["device_id"], 1, DeviceName="lab-01.corp.example", FileName="dropper",
                          FolderPath="/tmp/dropper", ProcessCommandLine="/tmp/dropper --quiet")
    assert post_batch(server, dev["credential"], [event]).status_code == 200
    context = chromium.new_context(base_url=server.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        portal_seed.sign_in(page, "admin", server.admin_password)
        page.locator("header nav").get_by_role("link", name="ASR").click()
        row = page.locator("#asr-rules tr[data-rule='ExecFromTempOrRemovable']")
        row.get_by_label("Mode of ExecFromTempOrRemovable").select_option("Audit")
        row.get_by_role("button", name="Set").click()
        row = page.locator("#asr-rules tr[data-rule='ExecFromTempOrRemovable']")
        expect(row.get_by_label("Mode of ExecFromTempOrRemovable")).to_have_value("Audit")
        row.get_by_role("link", name="What if").click()
        page.locator("#whatif-days").get_by_label("Days").fill("60")
        page.locator("#whatif-days").get_by_role("button", name="Replay").click()
        expect(page.locator("#whatif-total")).to_contain_text("1 event(s)")
        expect(page.locator("#whatif-hits")).to_contain_text("/tmp/dropper --quiet")
        page.locator("#whatif-switch").get_by_role("button").click()
        row = page.locator("#asr-rules tr[data-rule='ExecFromTempOrRemovable']")
        expect(row.get_by_label("Mode of ExecFromTempOrRemovable")).to_have_value("Block")

        page.locator("header nav").get_by_role("link", name="Indicators").click()
        form = page.locator("#new-indicator")
        form.get_by_label("Type").select_option("IpAddress")
        form.get_by_label("Value").fill("203.0.113.50")
        form.get_by_label("Title").fill("lab c2")
        form.get_by_role("button", name="Save indicator").click()
        expect(page.locator("#indicators tbody")).to_contain_text("203.0.113.50")
        csv_file = tmp_path / "batch.csv"
        csv_file.write_text("IndicatorType,IndicatorValue,ExpirationTime,Action,Severity,Title,Description,"
                            "RecommendedActions,RbacGroups,Category,MitreTechniques,GenerateAlert\n"
                            "DomainName,evil.example,,Block,High,bad,,,,,,FALSE\n"
                            "FileSha1,xyz,,Block,High,short,,,,,,FALSE\n")
        page.locator("#import-indicators input[type=file]").set_input_files(str(csv_file))
        page.locator("#import-indicators").get_by_role("button", name="Import").click()
        expect(page.locator("#import-results")).to_contain_text("1 saved, 1 refused")
        expect(page.locator("#import-results")).to_contain_text("line 3")
        expect(page.locator("#indicators tbody")).to_contain_text("evil.example")
        page.locator("#indicators tbody tr").filter(has_text="203.0.113.50").get_by_role("button",
                                                                                        name="Delete").click()
        expect(page.locator("#indicators tbody")).not_to_contain_text("203.0.113.50")
    finally:
        context.close()
