"""TOTP (RFC 6238) through pyotp, and the enrolment QR code as SVG through segno."""

from __future__ import annotations

import io
import secrets
from datetime import datetime

import pyotp
import segno

PERIOD = 30
DIGITS = 6
# One step either side of now: a phone's clock a little off, or a code typed just as it changed.
_WINDOW = 1


def new_secret() -> str:
    return pyotp.random_base32()  # 160 bits, RFC 4226's recommended length


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
