"""Browser fixtures: Debian's Chromium driven by Playwright, trusting only the test server's key."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import Browser, sync_playwright

from tests.e2e.agent_support import AgentProcess, require_root
from tests.support import VigilServer
from vigil.config import load_settings

CHROMIUM = Path("/usr/bin/chromium")
# CI sets this so that a missing browser fails the run instead of skipping the test.
BROWSER_REQUIRED = os.environ.get("VIGIL_REQUIRE_BROWSER") == "1"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

def _spki_pin(cert_pem: bytes) -> str:
    """Chromium's pin for a certificate: base64 SHA-256 of its SubjectPublicKeyInfo."""
    spki = x509.load_pem_x509_certificate(cert_pem).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


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


@pytest.fixture
def agent(sqlite_server: VigilServer, tmp_path: Path) -> Iterator[AgentProcess]:
    """A real agent (root) enrolled to the SQLite test server; test_agent_end_to_end overrides it per database."""
    require_root()
    a = AgentProcess.enroll(sqlite_server, tmp_path / "agent")
    a.start()
    try:
        yield a
    finally:
        a.stop()
