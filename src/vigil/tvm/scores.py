"""Risk of one weakness and a device's exposure score (0–100, Defender's bands), as pure functions.

risk = min(100, 100 · s · (0.5 + 0.5 · e) · f · c), rounded to 0.1, where
  s = CVSS base score / 10 (without one, the vendor's severity: critical 0.95, high 0.8, medium 0.55, low 0.25,
      unknown 0.5);
  e = 1 when the CVE is in CISA KEV, else its EPSS probability, else 0.1;
  f = 1 when a fix is available, 0.85 when none is (nothing to deploy yet, so less actionable);
  c = the device's criticality: low 0.75, normal 1, high 1.25, very high 1.5.
exposure = 100 · (1 − Π (1 − risk_i/100)^0.5) over the device's weaknesses (one per CVE), rounded: one critical
exploited weakness alone is "high", many small ones add up without reaching 100.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

VENDOR_SEVERITY = {"critical": 0.95, "high": 0.8, "important": 0.8, "medium": 0.55, "moderate": 0.55, "low": 0.25}
CRITICALITY = {"low": 0.75, "normal": 1.0, "high": 1.25, "very high": 1.5}


class ExposureBand(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


def finding_risk(
    cvss: float | None,
    vendor_severity: str | None,
    epss: float | None,
    kev: bool,
    fixed: bool,
    criticality: str = "normal",
) -> float:
    """The risk of one weakness on one device, 0–100 (formula in the module docstring)."""
    if cvss is not None and not 0 <= cvss <= 10:
        raise ValueError(f"CVSS base score out of range: {cvss}")
    if epss is not None and not 0 <= epss <= 1:
        raise ValueError(f"EPSS probability out of range: {epss}")
    if criticality not in CRITICALITY:
        raise ValueError(f"unknown criticality {criticality!r} (one of {', '.join(CRITICALITY)})")
    s = cvss / 10 if cvss is not None else VENDOR_SEVERITY.get((vendor_severity or "").lower(), 0.5)
    e = 1.0 if kev else (epss if epss is not None else 0.1)
    f = 1.0 if fixed else 0.85
    return round(min(100.0, 100 * s * (0.5 + 0.5 * e) * f * CRITICALITY[criticality]), 1)


def exposure_score(risks: Iterable[float]) -> int:
    """A device's exposure score 0–100 from its weaknesses' risks."""
    remaining = 1.0
    for r in risks:
        remaining *= (1 - min(max(r, 0.0), 100.0) / 100) ** 0.5
    return round(100 * (1 - remaining))


def exposure_band(score: int) -> ExposureBand:
    """Defender's bands: low 0–29, medium 30–69, high 70–100."""
    if not 0 <= score <= 100:
        raise ValueError(f"exposure score out of range: {score}")
    return ExposureBand.LOW if score < 30 else ExposureBand.MEDIUM if score < 70 else ExposureBand.HIGH
