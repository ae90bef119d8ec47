"""The antivirus's domain values: threats, detections and per-file verdicts."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class ThreatType(StrEnum):
    MALWARE = "malware"
    PUA = "pua"
    TEST = "test"
    HEURISTIC = "heuristic"


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    SEVERE = "severe"


class Source(StrEnum):
    """Which kind of signature found it."""

    HASH = "hash"
    YARA = "yara"
    HEURISTIC = "heuristic"
    BUILTIN = "builtin"


@dataclass(frozen=True)
class Threat:
    """A named threat in Defender's form, e.g. ``Trojan:Linux/Mirai.A`` or ``PUA:Linux/CoinMiner``."""

    name: str
    type: ThreatType
    severity: Severity
    source: Source
    signature: str  # the rule identifier, heuristic id or hash that matched

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "type": str(self.type), "severity": str(self.severity),
                "source": str(self.source), "signature": self.signature}


@dataclass(frozen=True)
class Detection:
    """A threat found in a file, or in a member of an archive (``member`` is the path inside, joined by '->')."""

    path: str
    threat: Threat
    member: str | None = None

    @property
    def location(self) -> str:
        return f"{self.path}->{self.member}" if self.member else self.path

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path, "member": self.member, "location": self.location, **self.threat.as_dict()}


@dataclass(frozen=True)
class Verdict:
    """What scanning one file found; ``incomplete`` says why part of it was not looked at (a limit, an error)."""

    detections: tuple[Detection, ...] = ()
    incomplete: tuple[str, ...] = field(default=())
    cached: bool = False

    @property
    def clean(self) -> bool:
        return not self.detections


def severity_for(type_: ThreatType) -> Severity:
    return {ThreatType.MALWARE: Severity.HIGH, ThreatType.PUA: Severity.MEDIUM, ThreatType.TEST: Severity.LOW,
            ThreatType.HEURISTIC: Severity.MEDIUM}[type_]


def type_of_name(name: str) -> ThreatType:
    """The threat type a Defender-style name implies: ``PUA:...`` is PUA, ``Virus:DOS/EICAR_Test_File`` is a test."""
    category = name.split(":", 1)[0].lower()
    if category in ("pua", "pup", "riskware", "adware"):
        return ThreatType.PUA
    if "eicar" in name.lower() or category == "test":
        return ThreatType.TEST
    return ThreatType.MALWARE
