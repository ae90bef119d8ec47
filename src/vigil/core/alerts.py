"""Alerts as Defender defines them: enums, categories from ATT&CK tactics, and deduplication."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from vigil.core.attack import AttackTactic


class AlertStatus(StrEnum):
    UNKNOWN = "Unknown"
    NEW = "New"
    IN_PROGRESS = "InProgress"
    RESOLVED = "Resolved"


class Classification(StrEnum):
    UNKNOWN = "Unknown"
    FALSE_POSITIVE = "FalsePositive"
    TRUE_POSITIVE = "TruePositive"


class Determination(StrEnum):
    NOT_AVAILABLE = "NotAvailable"
    APT = "Apt"
    MALWARE = "Malware"
    SECURITY_PERSONNEL = "SecurityPersonnel"
    SECURITY_TESTING = "SecurityTesting"
    UNWANTED_SOFTWARE = "UnwantedSoftware"
    OTHER = "Other"


class DetectionSource(StrEnum):
    SIGMA = "Sigma"
    CUSTOM_DETECTION = "CustomDetection"
    ANTIVIRUS = "VigilAv"
    # The agent's attack surface reduction rules (a Block, Warn or termination on the device).
    ASR = "VigilAsr"
    # Indicators of compromise (Defender's name for its custom threat-intelligence source).
    INDICATOR = "CustomerTI"
    # Vigil's own checks of what a device reports about itself (an identity change awaiting review).
    IDENTITY = "VigilIdentity"
    # The server's sign-in throttle: alerts about a Vigil account (no device), e.g. sustained password guessing.
    SIGN_IN = "VigilSignIn"


# Defender's alert categories are ATT&CK tactics under their own names; Vigil adds no others.
SUSPICIOUS_ACTIVITY = "Suspicious activity"

# Hits of one rule on one device within this window fold into one alert, as Defender's do.
DEDUP_WINDOW = timedelta(hours=1)
MAX_EVIDENCE = 20  # events kept as evidence per alert; the count keeps going past it


def category(tactics: tuple[AttackTactic, ...]) -> str:
    """The alert category: the rule's first ATT&CK tactic, else "Suspicious activity"."""
    return tactics[0].value if tactics else SUSPICIOUS_ACTIVITY


@dataclass(frozen=True)
class OpenAlert:
    """What deduplication needs to know about an existing alert."""

    id: str
    status: AlertStatus
    last_event_time: datetime


def folds_into(existing: OpenAlert | None, event_time: datetime) -> bool:
    """Whether a new hit of the same rule on the same device belongs to ``existing``."""
    if existing is None or existing.status is AlertStatus.RESOLVED:
        return False
    return abs(event_time - existing.last_event_time) <= DEDUP_WINDOW
