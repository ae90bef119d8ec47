"""The CA pin and the identity file."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from tests.unit.agent.pki import make_ca
from vigil.agent.enroll import enroll
from vigil.agent.errors import CaPinMismatch, IdentityError
from vigil.agent.identity import Identity, ca_fingerprint, load_identity, save_identity


def test_pin_mismatch_is_refused_before_any_network_traffic(tmp_path: Path) -> None:
    ca = make_ca()
    other = make_ca()
    package = tmp_path / "pkg.json"
    package.write_text(json.dumps({
        "server_url": "https://127.0.0.1:1",  # nothing listens: a network attempt would fail differently
        "ca_cert_pem": ca.cert_pem,
        "ca_sha256": ca_fingerprint(other.cert_pem),
        "token": "t",
        "expires_at": "2099-01-01T00:00:00Z",
    }))
    with pytest.raises(CaPinMismatch, match="refusing to trust"):
        enroll(package, tmp_path / "state")
    assert not (tmp_path / "state" / "identity.json").exists()


def test_identity_is_saved_with_mode_0600_and_hides_the_credential(tmp_path: Path) -> None:
    ident = Identity("dev", "vgd_dev.secret", "https://x", "pem", "ab", "2026-01-01T00:00:00+00:00")
    path = save_identity(tmp_path / "s", ident)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_identity(tmp_path / "s") == ident
    assert "secret" not in repr(ident)


def test_missing_or_world_readable_identity_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="enroll this device first"):
        load_identity(tmp_path)
    ident = Identity("dev", "vgd_dev.secret", "https://x", "pem", "ab", "2026-01-01T00:00:00+00:00")
    path = save_identity(tmp_path, ident)
    path.chmod(0o644)
    with pytest.raises(IdentityError, match="readable by other users"):
        load_identity(tmp_path)
