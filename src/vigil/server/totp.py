"""TOTP (RFC 6238) through pyotp, and the enrolment QR code as SVG through segno."""

from __future__ import annotations

import base64
import io
import os
import secrets
from datetime import datetime

import pyotp
import segno
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PERIOD = 30
DIGITS = 6
# One step either side of now: a phone's clock a little off, or a code typed just as it changed.
_WINDOW = 1


def new_secret() -> str:
    return pyotp.random_base32()  # 160 bits, RFC 4226's recommended length


class SealError(ValueError):
    """A stored TOTP secret this server's key does not open (a different data dir's key, or altered)."""


def _aead(server_key: bytes) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"vigil totp secret").derive(server_key)
    return AESGCM(key)


def seal(secret: str, server_key: bytes, user_id: int) -> str:
    """The secret as stored: AES-GCM under a key derived from the server's session key, bound to the user.

    A copy of the database alone then yields no second factor; binding to the user id keeps a sealed
    secret from being moved onto another account.
    """
    nonce = os.urandom(12)
    sealed = _aead(server_key).encrypt(nonce, secret.encode(), str(user_id).encode())
    return "v1." + base64.urlsafe_b64encode(nonce + sealed).decode()


def unseal(stored: str, server_key: bytes, user_id: int) -> str:
    if not stored.startswith("v1."):
        raise SealError("not a sealed TOTP secret")
    raw = base64.urlsafe_b64decode(stored[3:])
    try:
        return _aead(server_key).decrypt(raw[:12], raw[12:], str(user_id).encode()).decode()
    except InvalidTag:
        raise SealError("this server's key does not open the stored TOTP secret") from None


def provisioning_uri(secret: str, username: str, issuer: str) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD).provisioning_uri(name=username, issuer_name=issuer)


def qr_svg(uri: str) -> bytes:
    out = io.BytesIO()
    segno.make(uri, error="m").save(out, kind="svg", scale=5, border=2, title="TOTP enrolment QR code")
    return out.getvalue()


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step whose code ``code`` is (within one step of now), or None; the caller refuses spent steps."""
    code = "".join(code.split())
    if len(code) != DIGITS or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD)
    current = int(now.timestamp()) // PERIOD
    for step in range(current - _WINDOW, current + _WINDOW + 1):
        if secrets.compare_digest(totp.generate_otp(step), code):
            return step
    return None
