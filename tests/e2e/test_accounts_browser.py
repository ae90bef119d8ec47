"""TOTP in a real browser: enrolment from the QR page, sign-in with a code, recovery codes, enforcement per role."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyotp
import pytest
import sqlalchemy as sa
from playwright.sync_api import Browser, Page, expect

from tests.e2e.portal_seed import sign_in
from tests.integration.server.rbac_support import PASSWORD, make_user
from tests.support import VigilServer
from vigil.config import load_settings
from vigil.store import db

pytestmark = pytest.mark.browser


def code_at(secret: str, offset_steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(datetime.now(UTC) + timedelta(seconds=30 * offset_steps))


def enrol(page: Page) -> tuple[str, str, list[str]]:
    """On the enrolment page: read the key the page shows, confirm it with the app's code, keep the recovery codes."""
    expect(page.get_by_role("heading", name="Set up TOTP")).to_be_visible()
    qr = page.get_by_role("img", name="QR code of the TOTP key")
    expect(qr).to_be_visible()
    assert qr.evaluate("img => img.naturalWidth") > 0  # the SVG route answered with an image
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    assert len(secret) == 32
    used = pyotp.TOTP(secret).now()
    page.get_by_label("Code the app shows now").fill(used)
    page.get_by_role("button", name="Turn on TOTP").click()
    expect(page.get_by_role("heading", name="TOTP is on")).to_be_visible()
    codes = [c.strip() for c in page.locator("#recovery-codes code").all_inner_texts()]
    assert len(codes) == 10
    return secret, used, codes


def test_totp_enrolment_sign_in_and_recovery_codes(
    sqlite_server: VigilServer, chromium: Browser, tmp_path: Path
) -> None:
    server = sqlite_server
    base = server.url
    make_user(server, "dana")
    context = chromium.new_context(base_url=base)
    page = context.new_page()
    try:
        sign_in(page, "dana", PASSWORD)
        expect(page).to_have_url(f"{base}/")
        page.get_by_role("banner").get_by_role("link", name="dana").click()
        expect(page).to_have_url(f"{base}/account")
        expect(page.locator("#mfa-state")).to_contain_text("TOTP is off")
        page.get_by_role("link", name="Set up TOTP").click()
        expect(page).to_have_url(f"{base}/account/totp")
        page.screenshot(path=str(tmp_path / "totp-enrol.png"))
        secret, used, codes = enrol(page)
        page.get_by_role("link", name="Continue to Vigil").click()
        expect(page).to_have_url(f"{base}/")  # a fresh session after the change

        page.get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(f"{base}/login")
        sign_in(page, "dana", PASSWORD)
        expect(page).to_have_url(f"{base}/login/totp")
        expect(page.get_by_role("heading", name="Enter your code")).to_be_visible()
        page.goto("/devices")  # the password alone opens nothing
        expect(page).to_have_url(f"{base}/login")

        sign_in(page, "dana", PASSWORD)
        # The code that confirmed the enrolment is spent: the same code, still inside its window, is refused.
        page.get_by_label("Code from your authenticator app").fill(used)
        page.get_by_role("button", name="Verify").click()
        expect(page.get_by_role("alert")).to_have_text("Wrong or already used TOTP code")
        page.get_by_label("Code from your authenticator app").fill(code_at(secret, 1))
        page.get_by_role("button", name="Verify").click()
        expect(page).to_have_url(f"{base}/")

        page.get_by_role("button", name="Sign out").click()
        sign_in(page, "dana", PASSWORD)
        page.get_by_text("Lost your phone? Use a recovery code").click()
        page.get_by_label("Recovery code").fill(codes[3])
        page.get_by_role("button", name="Use recovery code").click()
        expect(page).to_have_url(f"{base}/account")
        expect(page.locator("#mfa-state")).to_have_text("TOTP is on. 9 of 10 recovery codes left.")

        page.get_by_role("button", name="Sign out").click()
        sign_in(page, "dana", PASSWORD)
        page.get_by_text("Lost your phone? Use a recovery code").click()
        page.get_by_label("Recovery code").fill(codes[3])
        page.get_by_role("button", name="Use recovery code").click()
        expect(page.get_by_role("alert")).to_have_text("Wrong or already used recovery code")
        expect(page).to_have_url(f"{base}/login/totp?error=Wrong+or+already+used+recovery+code")
    finally:
        context.close()


def _backdate_grace(server: VigilServer, username: str, days: int) -> None:
    engine = db.make_engine(load_settings(server.data_dir).db_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE users SET mfa_grace_started_at = :at WHERE username = :u"),
                         {"at": datetime.now(UTC) - timedelta(days=days), "u": username})
    finally:
        engine.dispose()


def test_a_role_that_requires_totp_gets_a_grace_period_then_only_the_enrolment_page(
    sqlite_server: VigilServer, chromium: Browser, tmp_path: Path
) -> None:
    server = sqlite_server
    base = server.url
    make_user(server, "erin")  # read-only: not in the policy
    server.stop()
    with (server.data_dir / "vigil.toml").open("a") as f:
        f.write('\n[security]\nrequire_mfa_roles = ["full-access"]\nmfa_grace_days = 7\n')
    server.start()
    context = chromium.new_context(base_url=base)
    page = context.new_page()
    try:
        sign_in(page, "erin", PASSWORD)
        expect(page).to_have_url(f"{base}/")  # no second factor asked of a role outside the policy
        page.get_by_role("button", name="Sign out").click()

        # First sign-in under the policy: the grace period starts, the account page says so.
        sign_in(page, "admin", server.admin_password)
        expect(page).to_have_url(f"{base}/account")
        expect(page.locator("#mfa-state")).to_contain_text("Your role requires a second factor. Set it up before")
        page.get_by_role("link", name="Later").click()
        expect(page).to_have_url(f"{base}/")

        # The grace period ends (as if eight days went by): the open session closes with it...
        _backdate_grace(server, "admin", 8)
        page.goto("/devices")
        expect(page).to_have_url(f"{base}/login")
        # ...and the password leads only to the enrolment page.
        sign_in(page, "admin", server.admin_password)
        expect(page).to_have_url(f"{base}/account/totp")
        expect(page.get_by_role("status")).to_contain_text("the grace period is over")
        page.screenshot(path=str(tmp_path / "forced-enrolment.png"))
        for elsewhere in ("/devices", "/account", "/audit"):
            page.goto(elsewhere)
            expect(page).to_have_url(f"{base}/login")
        with server.client() as c:
            r = c.post("/api/auth/login", json={"username": "admin", "password": server.admin_password})
            assert r.status_code == 403 and r.json()["error"] == "mfa_enrollment_required"

        sign_in(page, "admin", server.admin_password)
        expect(page).to_have_url(f"{base}/account/totp")
        secret, _, _ = enrol(page)
        page.get_by_role("link", name="Continue to Vigil").click()
        expect(page).to_have_url(f"{base}/")
        expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()

        page.get_by_role("button", name="Sign out").click()
        sign_in(page, "admin", server.admin_password)
        expect(page).to_have_url(f"{base}/login/totp")
        page.get_by_label("Code from your authenticator app").fill(code_at(secret, 1))
        page.get_by_role("button", name="Verify").click()
        expect(page).to_have_url(f"{base}/")
    finally:
        context.close()
