"""The agent trusts only the CA pinned in its onboarding package."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from tests.support import VigilServer
from vigil.deploy import pki


def _enroll(pkg: dict[str, object], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "pkg.json"
    path.write_text(json.dumps(pkg))
    return subprocess.run(
        [sys.executable, "-m", "vigil", "agent", "enroll", str(path), "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=60,
    )


def test_a_package_whose_ca_does_not_match_its_pin_is_refused(sqlite_server: VigilServer, tmp_path: Path) -> None:
    pkg = sqlite_server.onboarding_package()
    pkg["ca_sha256"] = "0" * 64
    done = _enroll(pkg, tmp_path)
    assert done.returncode != 0
    assert "pin" in done.stderr.lower() or "sha-256" in done.stderr.lower()
    assert not (tmp_path / "state" / "identity.json").exists()


def test_a_server_outside_the_pinned_ca_is_refused(sqlite_server: VigilServer, tmp_path: Path) -> None:
    genuine = sqlite_server.onboarding_package()
    pkg = dict(genuine)
    # Someone else's CA, correctly pinned: the real server's certificate does not chain to it.
    other = pki.make_ca("Impostor", datetime.now(UTC))
    pkg["ca_cert_pem"] = other.cert_pem.decode()
    pkg["ca_sha256"] = pki.cert_sha256(other.cert_pem)
    done = _enroll(pkg, tmp_path)
    assert done.returncode != 0
    assert "certificate" in done.stderr.lower() or "tls" in done.stderr.lower()
    assert not (tmp_path / "state" / "identity.json").exists()
    # The refused attempt never reached the server, so the single-use token is still unspent.
    assert _enroll(genuine, tmp_path).returncode == 0
