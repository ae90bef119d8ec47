"""Test support for single sign-on: a real OpenID Connect provider (npm's oidc-provider) run by Node."""

from __future__ import annotations

import fcntl
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx

from tests.support import REPO, VigilServer, free_port

OIDC_DIR = REPO / "tests" / "oidc"
CLIENT_ID = "vigil-portal"
CLIENT_SECRET = "test-client-secret-0123456789abcdef"
# CI sets this so that a missing Node.js fails the run instead of skipping the single sign-on tests.
OIDC_REQUIRED = os.environ.get("VIGIL_REQUIRE_OIDC") == "1"


class NodeMissing(Exception):
    """Node.js or npm is not installed, so the test provider cannot run."""


def install_provider() -> None:
    """`npm ci` in tests/oidc once per lock file: later runs reuse node_modules (locked against parallel runs)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        raise NodeMissing("Node.js and npm are needed for the OIDC provider (apt-get install nodejs npm)")
    stamp = OIDC_DIR / "node_modules" / ".vigil-lock-sha256"
    want = hashlib.sha256((OIDC_DIR / "package-lock.json").read_bytes()).hexdigest()
    with (OIDC_DIR.parent / ".oidc-npm-ci.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and stamp.read_text() == want:
            return
        r = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--prefix", str(OIDC_DIR)],
                           capture_output=True, text=True, timeout=300, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"npm ci in {OIDC_DIR} failed:\n{r.stdout}\n{r.stderr}")
        stamp.write_text(want)


@dataclass
class OidcProvider:
    """The provider as a child process, with its user directory and fault file in ``work``."""

    work: Path
    redirect_uri: str
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def accounts_file(self) -> Path:
        return self.work / "accounts.json"

    @property
    def fault_file(self) -> Path:
        return self.work / "fault.json"

    def set_account(self, login: str, **claims: Any) -> None:
        """Add or change a user in the provider's directory (read at every sign-in)."""
        accounts = json.loads(self.accounts_file.read_text()) if self.accounts_file.exists() else {}
        accounts[login] = claims
        self.accounts_file.write_text(json.dumps(accounts))

    def fault(self, **changes: Any) -> None:
        """Make the token endpoint re-sign its next ID tokens with these changes (see provider.mjs)."""
        self.fault_file.write_text(json.dumps(changes))

    def clear_fault(self) -> None:
        self.fault_file.unlink(missing_ok=True)

    def start(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        config = self.work / "provider.json"
        config.write_text(json.dumps({
            "port": self.port, "issuer": self.issuer, "accounts_file": str(self.accounts_file),
            "fault_file": str(self.fault_file),
            "clients": [{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "redirect_uris": [self.redirect_uri]}],
        }))
        log = self.work / "provider.log"
        with log.open("wb") as out:
            self.proc = subprocess.Popen(["node", str(OIDC_DIR / "provider.mjs"), str(config)], stdout=out,
                                         stderr=subprocess.STDOUT, cwd=OIDC_DIR)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the OIDC provider exited with {self.proc.returncode}:\n{log.read_text()}")
            if "ready " in log.read_text():
                return
            time.sleep(0.05)
        raise RuntimeError(f"the OIDC provider did not start:\n{log.read_text()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def oidc_toml(idp: OidcProvider, **overrides: Any) -> str:
    """An `[oidc]` table for vigil.toml pointing at ``idp`` (JSON scalars and arrays are valid TOML)."""
    values: dict[str, Any] = {
        "issuer": idp.issuer, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "provider_name": "Test IdP",
        "scopes": ["openid", "profile", "email", "groups"],
    }
    group_map = overrides.pop("group_map", {})
    values.update(overrides)
    lines = ["", "[oidc]", *(f"{k} = {json.dumps(v)}" for k, v in values.items()), "", "[oidc.group_map]"]
    lines += [f"{json.dumps(k)} = {json.dumps(v)}" for k, v in group_map.items()]
    return "\n".join(lines) + "\n"


def configure(server: VigilServer, idp: OidcProvider, **overrides: Any) -> None:
    """(Re)write the server's `[oidc]` settings and restart it if it was running."""
    toml = server.data_dir / "vigil.toml"
    base = toml.read_text().split("\n[oidc]")[0].rstrip("\n") + "\n"
    toml.write_text(base + oidc_toml(idp, **overrides))
    if server.proc is not None:
        server.stop()
    server.start()


def provider_login(idp: OidcProvider, authorize_url: str, login: str) -> str:
    """Walk the provider's own pages as a browser would: sign in as ``login``; returns the callback URL."""
    with httpx.Client(timeout=30) as browser:
        url = authorize_url
        for _ in range(10):
            r = browser.get(url)
            if r.status_code in (302, 303):
                url = urljoin(url, r.headers["location"])
                if not url.startswith(idp.issuer):
                    return url
                continue
            form = re.search(r'<form[^>]*action="([^"]+)"', r.text)
            assert r.status_code == 200 and form, f"unexpected provider page {r.status_code}: {r.text[:500]}"
            r = browser.post(urljoin(url, html.unescape(form.group(1))),
                             data={"prompt": "login", "login": login, "password": "any"})
            assert r.status_code in (302, 303), r.text[:500]
            url = urljoin(url, r.headers["location"])
            if not url.startswith(idp.issuer):
                return url
        raise AssertionError(f"the provider never sent the browser back (last URL {url})")
