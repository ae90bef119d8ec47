"""TOTP codes within one step of now, and the sealed secret: opened only by the same key for the same user."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyotp
import pytest

from vigil.server import totp

NOW = datetime(2026, 12, 7, 3, 0, 10, tzinfo=UTC)


def test_codes_match_their_step_within_one_step_of_now() -> None:
    secret = totp.new_secret()
    step = int(NOW.timestamp()) // 30
    app = pyotp.TOTP(secret)
    assert totp.matching_step(secret, app.at(NOW), NOW) == step
    assert totp.matching_step(secret, app.at(NOW - timedelta(seconds=30)), NOW) == step - 1
    assert totp.matching_step(secret, " ".join([app.at(NOW)[:3], app.at(NOW)[3:]]), NOW) == step
    assert totp.matching_step(secret, app.at(NOW + timedelta(seconds=90)), NOW) is None
    assert totp.matching_step(secret, "12345", NOW) is None and totp.matching_step(secret, "abcdef", NOW) is None


def test_a_sealed_secret_opens_only_with_its_key_and_user() -> None:
    key, other = b"k" * 32, b"o" * 32
    sealed = totp.seal("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", key, 7)
    assert "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP" not in sealed and len(sealed) <= 255
    assert totp.unseal(sealed, key, 7) == "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    for k, uid in ((other, 7), (key, 8)):
        with pytest.raises(totp.SealError):
            totp.unseal(sealed, k, uid)
    with pytest.raises(totp.SealError):
        totp.unseal("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", key, 7)


def test_the_qr_code_is_an_svg_of_the_otpauth_uri() -> None:
    uri = totp.provisioning_uri("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", "alice", "Vigil")
    assert uri.startswith("otpauth://totp/Vigil:alice?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
    svg = totp.qr_svg(uri)
    assert svg.lstrip().startswith(b"<?xml") or svg.lstrip().startswith(b"<svg")
    assert b"<script" not in svg
