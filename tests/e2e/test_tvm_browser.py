"""From the portal in Chromium: the TVM dashboard (exposure and secure score tiles, the trend drawn by Chart.js),
weaknesses with why they matched, a software's devices, a recommendation's remediation request and exception made
through the forms, and a device's page with its weaknesses and secure configuration checks."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e import portal_seed
from tests.integration.tvm.test_secure_configuration import _event, _lax
from tests.integration.tvm.test_server_tvm import DEMO_OLD, OPENSSL, import_feeds, inventory_events
from tests.support import VigilServer, post_batch

pytestmark = pytest.mark.browser


def test_tvm_pages(sqlite_server: VigilServer, chromium: Browser, tmp_path: Path) -> None:
    server = sqlite_server
    import_feeds(server, tmp_path)
    (dev,) = portal_seed.enroll(server, ["web-01.corp.example"])
    events = [*inventory_events(dev["device_id"], 1, uuid.uuid4().hex, 1, None, [*OPENSSL, DEMO_OLD]),
              _event(dev["device_id"], 10, _lax(tmp_path / "host"))]
    assert post_batch(server, dev["credential"], events).status_code == 200
    context = chromium.new_context(base_url=server.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        portal_seed.sign_in(page, "admin", server.admin_password)
        page.goto("/tvm")
        expect(page.locator("h1")).to_have_text("Vulnerability management")
        expect(page.locator("#tile-weaknesses")).to_contain_text("4 weaknesses")
        expect(page.locator("#tile-kev")).to_contain_text("1 known exploited")
        expect(page.locator("#tile-secure-score")).to_contain_text("over 1 devices")
        page.wait_for_function("() => window.Chart && Chart.getChart(document.getElementById('chart-exposure'))")
        assert page.evaluate("Chart.getChart(document.getElementById('chart-exposure')).data.datasets[0].data"
                             ".length") == 1
        expect(page.locator("#top-recommendations")).to_contain_text("openssl")

        page.locator("#tvm-nav").get_by_role("link", name="Weaknesses").click()
        kev = page.locator("#weaknesses tr[id='CVE-2099-0001']")
        expect(kev).to_contain_text("KEV")
        expect(kev).to_contain_text("3.0.15-1~deb12u1")

        page.goto("/tvm/software/debian-_-openssl")
        expect(page.locator("#software-devices")).to_contain_text("web-01.corp.example")

        page.goto("/tvm/recommendations")
        rec = page.locator("#recommendations tr[id='va-_-debian-_-openssl']")
        expect(rec).to_contain_text("fixes 3 CVEs, 1 in KEV")
        rec.locator("input[name=due_on]").fill("2099-01-01")
        rec.get_by_role("button", name="Request remediation").click()
        expect(page.locator("#remediation-tasks")).to_contain_text("0/1 (0%)")
        config = page.locator("#recommendations tr[id='sca-_-scid-vgl-1001']")
        expect(config).to_contain_text("ConfigurationChange")
        config.locator("select[name=justification]").select_option("AcceptRisk")
        config.locator("input[name=comment]").fill("jump host, root keys only")
        config.get_by_role("button", name="Create exception").click()
        expect(page.locator("#tvm-exceptions")).to_contain_text("jump host, root keys only")

        page.goto(f"/tvm/devices/{dev['device_id']}")
        expect(page.locator("#device-weaknesses")).to_contain_text("CVE-2099-0001")
        root_login = page.locator("#device-configuration tr[id='scid-vgl-1001']")
        expect(root_login.locator(".state")).to_have_text("not compliant")
        expect(root_login).to_contain_text("PermitRootLogin yes")
        expect(page.locator("#device-configuration tr[id='scid-vgl-1002'] .state")).to_have_text("compliant")
        expect(page.locator("h2").filter(has_text="Secure configuration")).to_contain_text("secure score")
    finally:
        context.close()
