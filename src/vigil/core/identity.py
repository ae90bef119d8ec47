"""A device's accepted identity (what group rules match) and the changes its agent reports to it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

# The alert an unaccepted identity change raises; one rule id, so a flapping agent folds into one alert.
IDENTITY_CHANGE_RULE_ID = "vigil-identity-change"


class ChangeStatus(StrEnum):
    PENDING = "Pending"  # waiting for an administrator; the device keeps its accepted identity
    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    APPLIED = "Applied"  # applied at once because the device's group trusts reported identities


@dataclass(frozen=True)
class Identity:
    """The facts a device reports that group rules can match: name (and its domain), OS and agent tags."""

    name: str
    os_platform: str
    tags: tuple[str, ...]

    @property
    def domain(self) -> str:
        # The same reading as DeviceFacts.domain: the DNS domain of the host name.
        return self.name.split(".", 1)[1] if "." in self.name else ""

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "domain": self.domain, "osPlatform": self.os_platform, "tags": list(self.tags)}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Identity:
        return cls(str(raw["name"]), str(raw["osPlatform"]), tuple(raw.get("tags") or ()))

    def changed_fields(self, other: Identity) -> tuple[str, ...]:
        """The names of the fields (as in ``as_json``) that differ between the two identities."""
        mine, theirs = self.as_json(), other.as_json()
        return tuple(k for k in mine if mine[k] != theirs[k])


def reported_identity(accepted: Identity, facts: dict[str, Any]) -> Identity:
    """What the device now claims: each fact it reported, the accepted value for each it left out."""
    tags = facts.get("agent_tags")
    return Identity(
        str(facts.get("computer_dns_name") or accepted.name),
        str(facts.get("os_platform") or accepted.os_platform),
        accepted.tags if tags is None else tuple(sorted(set(tags))),
    )


@dataclass(frozen=True)
class IdentityChange:
    """One reported change to a device's identity and what became of it."""

    id: int
    device_id: str
    status: ChangeStatus
    before: Identity
    after: Identity
    detected_at: datetime
    last_reported_at: datetime
    reports: int
    # Bumped whenever the device reports yet another identity while the change is pending: an
    # administrator accepts the revision they saw, never one the device slipped in after.
    revision: int
    decided_by: str | None
    decided_at: datetime | None
    comment: str | None
