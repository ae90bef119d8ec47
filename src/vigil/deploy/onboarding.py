"""The Onboard phase: onboarding packages an endpoint uses to enroll."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import sqlalchemy as sa

from vigil.config import Settings
from vigil.deploy.pki import cert_sha256
from vigil.deploy.signing import public_key
from vigil.store.devices import issue_token
from vigil.wire import OnboardingPackage

_DURATION = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
MAX_TOKEN_LIFETIME = timedelta(days=90)


def parse_duration(text: str) -> timedelta:
    """`30m`, `12h`, `7d`, `2w` → a timedelta; anything else is a clear error."""
    m = _DURATION.match(text.strip())
    if not m or int(m.group(1)) == 0:
        raise ValueError(f"invalid duration {text!r}: use a number and m, h, d or w, e.g. 7d")
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


def create_package(
    conn: sa.Connection, settings: Settings, *, group: str | None, lifetime: timedelta, uses: int,
    created_by: str, now: datetime,
) -> OnboardingPackage:
    if lifetime > MAX_TOKEN_LIFETIME:
        raise ValueError(f"an enrollment token may live at most {MAX_TOKEN_LIFETIME.days} days")
    ca_pem = settings.ca_cert.read_bytes()
    issued = issue_token(
        conn, group=group, expires_at=now + lifetime, max_uses=uses, created_by=created_by, now=now
    )
    return OnboardingPackage(
        server_url=settings.url,
        ca_cert_pem=ca_pem.decode(),
        ca_sha256=cert_sha256(ca_pem),
        token=issued.token,
        group=issued.group,
        expires_at=issued.expires_at,
        action_public_key=public_key(settings),
    )
