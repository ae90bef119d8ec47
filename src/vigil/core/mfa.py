"""Second-factor policy: which roles must use TOTP, the grace period at first sign-in, and recovery codes."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

RECOVERY_CODES = 10
# 80 random bits each: too many to guess online or to reverse from their SHA-256 offline.
_RECOVERY_BYTES = 10


class MfaState(StrEnum):
    NOT_REQUIRED = "not-required"  # offered, not required: no role of the user's is in the policy
    ENROLLED = "enrolled"
    GRACE = "grace"  # required, not yet set up, still inside the grace period
    OVERDUE = "overdue"  # required and the grace period is over: only the enrolment page is open


@dataclass(frozen=True)
class MfaStatus:
    state: MfaState
    deadline: datetime | None = None  # the end of the grace period, when there is one


@dataclass(frozen=True)
class MfaPolicy:
    """``required_roles`` holds role names: basic mode's (full-access, read-only) and RBAC roles' names."""

    required_roles: frozenset[str] = frozenset()
    grace: timedelta = timedelta(days=7)

    def required_for(self, roles: Iterable[str]) -> bool:
        return not self.required_roles.isdisjoint(roles)

    def status(self, roles: Iterable[str], enrolled: bool, grace_started: datetime | None, now: datetime) -> MfaStatus:
        if enrolled:
            return MfaStatus(MfaState.ENROLLED)
        if not self.required_for(roles):
            return MfaStatus(MfaState.NOT_REQUIRED)
        # The grace period runs from the first sign-in at which the requirement applied to this user.
        deadline = (grace_started or now) + self.grace
        return MfaStatus(MfaState.GRACE if now < deadline else MfaState.OVERDUE, deadline)


def new_recovery_codes(n: int = RECOVERY_CODES) -> list[str]:
    """Fresh single-use recovery codes, as shown to the user once: ``abcd-efgh-ijkl-mnop``."""
    out = []
    for _ in range(n):
        raw = base64.b32encode(secrets.token_bytes(_RECOVERY_BYTES)).decode().lower()
        out.append("-".join(raw[i:i + 4] for i in range(0, 16, 4)))
    return out


def normalize_recovery_code(text: str) -> str:
    """What a person typed, as stored: no spaces or hyphens, lower case (so ``ABCD EFGH...`` works too)."""
    return "".join(c for c in text.lower() if c.isalnum())
