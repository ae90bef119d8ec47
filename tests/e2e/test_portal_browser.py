"""The portal in a real browser: sign-in, device list, device timeline, event filter and sign-out."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import Browser, expect, sync_playwright

from tests.support import VigilServer, enroll_raw, post_batch, process_event
from vigil.config import load_settings

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
# CI sets this so that a missing browser fails the run instead of skipping the test.
BROWSER_REQUIRED = os.environ.get("VIGIL_REQUIRE_BROWSER") == "1"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
HOSTNAME = "web-portal-07.corp.example.org"
COMMANDS = [
    "/usr/bin/python3 /opt/vigil-e2e/exfil_marker_6f1c.py --target backup-7731",
    "curl -fsSL https://updates.example.org/marker-42a9/install.sh -o /tmp/marker-42a9.sh",
]


def _spki_pin(cert_pem: bytes) -> str:
    """Chromium's pin for a certificate: base64 SHA-256 of its SubjectPublicKeyInfo."""
    spki = x509.load_pem_x509_certificate(cert_pem).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


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


@pytest.fixture
def chromium(sqlite_server: VigilServer) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is not installed (apt-get install chromium)"
        if BROWSER_REQUIRED:
            pytest.fail(reason + " and VIGIL_REQUIRE_BROWSER=1")
        pytest.skip(reason)
    # Trust exactly this test server's key (its certificate comes from the test's own CA) rather
    # than ignoring every certificate error.
    pin = _spki_pin(load_settings(sqlite_server.data_dir).server_cert.read_bytes())
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={pin}"]
        )
        try:
            yield browser
        finally:
            browser.close()


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
        expect(page).to_have_url(f"{base}/devices/{device['device_id']}?table=DeviceNetworkEvents")
        expect(timeline.get_by_text(COMMANDS[0], exact=True)).to_have_count(0)
        expect(timeline.locator("td.empty")).to_be_visible()
        page.get_by_label("Events").select_option("all")
        expect(page).to_have_url(f"{base}/devices/{device['device_id']}?table=all")
        expect(timeline.get_by_text(COMMANDS[1], exact=True)).to_be_visible()

        page.get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(f"{base}/login")
        page.goto("/devices")
        expect(page).to_have_url(f"{base}/login")
    finally:
        context.close()
