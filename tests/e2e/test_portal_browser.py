"""The portal in a real browser: sign-in, device list, device timeline, event filter and sign-out."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.support import VigilServer, enroll_raw, post_batch, process_event

pytestmark = pytest.mark.browser

HOSTNAME = "web-portal-07.corp.example.org"
COMMANDS = [
    "/usr/bin/python3 /opt/vigil-e2e/exfil_marker_6f1c.py --target backup-7731",
    "curl -fsSL https://updates.example.org/marker-42a9/install.sh -o /tmp/marker-42a9.sh",
]


@pytest.fixture
def device(sqlite_server: VigilServer) -> dict[str, str]:
    pkg = sqlite_server.onboarding_package(expires="1h")
    dev = dict(enroll_raw(sqlite_server, pkg["token"], hostname=HOSTNAME).json())
    events = [
        process_event(dev["device_id"], i + 1, DeviceName=HOSTNAME, ProcessCommandLine=cmd,
                      FileName=cmd.split()[0].rsplit("/", 1)[-1], AccountName="dev",
                      InitiatingProcessFileName="bash", InitiatingProcessId=4242,
                      SHA256="ab" * 32)
        for i, cmd in enumerate(COMMANDS)
    ]
    r = post_batch(sqlite_server, dev["credential"], events)
    assert r.status_code == 200, r.text
    return dev


def test_portal_sign_in_device_timeline_and_sign_out(
    sqlite_server: VigilServer, device: dict[str, str], chromium: Browser, tmp_path: Path
) -> None:
    base = sqlite_server.url
    context = chromium.new_context(base_url=base, viewport={"width": 1400, "height": 900})
    page = context.new_page()
    try:
        # An anonymous visitor is sent to the sign-in page.
        page.goto("/devices")
        expect(page).to_have_url(f"{base}/login")
        expect(page.get_by_role("heading", name="Sign in to Vigil")).to_be_visible()

        page.get_by_label("User name").fill("admin")
        page.get_by_label("Password").fill("not-the-password")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_have_text("Wrong user name or password")
        expect(page).to_have_url(f"{base}/login?error=Wrong+user+name+or+password")
        page.screenshot(path=str(tmp_path / "sign-in-error.png"))

        page.get_by_label("User name").fill("admin")
        page.get_by_label("Password").fill(sqlite_server.admin_password)
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(f"{base}/")  # the dashboard, the landing page
        page.locator("header nav").get_by_role("link", name="Devices").click()
        expect(page).to_have_url(f"{base}/devices")
        expect(page.get_by_role("heading", name="Device inventory")).to_be_visible()

        link = page.locator("#devices").get_by_role("link", name=HOSTNAME)
        expect(link).to_be_visible()
        link.click()
        expect(page).to_have_url(f"{base}/devices/{device['device_id']}")
        expect(page.get_by_role("heading", name=HOSTNAME)).to_be_visible()

        timeline = page.locator("#timeline")
        for cmd in COMMANDS:
            expect(timeline.get_by_text(cmd, exact=True)).to_be_visible()
        page.screenshot(path=str(tmp_path / "device-page.png"), full_page=True)

        # Another table has no events for this device; "all" brings the processes back.
        page.get_by_label("Events").select_option("DeviceNetworkEvents")
        expect(page).to_have_url(f"{base}/devices/{device['device_id']}?table=DeviceNetworkEvents&range=30d&action=")
        expect(timeline.get_by_text(COMMANDS[0], exact=True)).to_have_count(0)
        expect(timeline.locator("td.empty")).to_be_visible()
        page.get_by_label("Events").select_option("all")
        expect(page).to_have_url(f"{base}/devices/{device['device_id']}?table=all&range=30d&action=")
        expect(timeline.get_by_text(COMMANDS[1], exact=True)).to_be_visible()

        page.get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(f"{base}/login")
        page.goto("/devices")
        expect(page).to_have_url(f"{base}/login")
    finally:
        context.close()
