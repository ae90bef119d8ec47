"""Alert severity as Defender names it, and how Sigma rule levels map onto it."""

from __future__ import annotations

from enum import StrEnum


class Severity(StrEnum):
    INFORMATIONAL = "Informational"
    LOW = "Low"
    MEDIUM = "Medium"
    HIGH = "High"


class RuleLevel(StrEnum):
    """Sigma's rule levels, ordered from least to most severe."""

    INFORMATIONAL = "informational"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _LEVEL_ORDER.index(self)

    @property
    def severity(self) -> Severity:
        # Defender has no "critical": critical rules become High alerts, as Defender's own do.
        return _LEVEL_SEVERITY[self]


_LEVEL_ORDER = (
    RuleLevel.INFORMATIONAL,
    RuleLevel.LOW,
    RuleLevel.MEDIUM,
    RuleLevel.HIGH,
    RuleLevel.CRITICAL,
)

_LEVEL_SEVERITY = {
    RuleLevel.INFORMATIONAL: Severity.INFORMATIONAL,
    RuleLevel.LOW: Severity.LOW,
    RuleLevel.MEDIUM: Severity.MEDIUM,
    RuleLevel.HIGH: Severity.HIGH,
    RuleLevel.CRITICAL: Severity.HIGH,
}
