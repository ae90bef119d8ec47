"""The secure configuration assessment as the agent sends it and the server reads it back: one DeviceEvents row of
action type ``SecureConfigurationAssessment`` whose AdditionalFields are

    SecureScore   the device's secure score (vigil.tvm.configuration.secure_score)
    Assessments   every check's row: ConfigurationId, ConfigurationName, ConfigurationCategory,
                  ConfigurationSubcategory, ConfigurationImpact, IsApplicable, IsCompliant, IsExpectedUserImpact,
                  Evidence, RemediationOptions

Each row is a whole assessment (the server replaces the device's); evidence is cut so the row stays under the 64 KiB
a dynamic value may hold. Reading checks every field and names the first wrong one (``Assessments[3].IsCompliant``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vigil.tvm.configuration import Assessment, secure_score

CONFIGURATION_ACTION = "SecureConfigurationAssessment"
MAX_CHARS = 60_000  # as inventory parts: under the 64 KiB of a row's dynamic value
MAX_EVIDENCE = 1_000
MAX_CHECKS = 500
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class ReportError(ValueError):
    """A SecureConfigurationAssessment row the server cannot take, with the field that is wrong."""


@dataclass(frozen=True, slots=True)
class ConfigurationRow:
    configuration_id: str
    name: str
    category: str
    subcategory: str
    impact: float
    applicable: bool
    compliant: bool
    user_impact: bool
    evidence: str
    remediation: str


def report_fields(assessments: Sequence[Assessment]) -> dict[str, Any]:
    """The AdditionalFields of one assessment row; long evidence is cut until the whole fits in MAX_CHARS."""
    rows = [a.to_json() for a in assessments]
    limit = MAX_EVIDENCE
    while True:
        for r, a in zip(rows, assessments, strict=True):
            r["Evidence"] = _cut(a.result.evidence, limit)
        doc = {"SecureScore": secure_score(assessments), "Assessments": rows}
        if len(json.dumps(doc)) <= MAX_CHARS or limit <= 40:
            return doc
        limit //= 2


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def read_report(fields: Any) -> list[ConfigurationRow]:
    """The rows of one SecureConfigurationAssessment; raises ReportError naming the first wrong field."""
    if isinstance(fields, str):
        try:
            fields = json.loads(fields)
        except ValueError:
            raise ReportError("AdditionalFields is not JSON") from None
    if not isinstance(fields, dict):
        raise ReportError("AdditionalFields is not an object")
    items = fields.get("Assessments")
    if not isinstance(items, list) or not items:
        raise ReportError("Assessments must be a non-empty list")
    if len(items) > MAX_CHECKS:
        raise ReportError(f"Assessments has {len(items)} rows, more than {MAX_CHECKS}")
    out: dict[str, ConfigurationRow] = {}
    for i, item in enumerate(items):
        where = f"Assessments[{i}]"
        if not isinstance(item, dict):
            raise ReportError(f"{where} is not an object")
        cid = item.get("ConfigurationId")
        if not isinstance(cid, str) or not _ID.match(cid):
            raise ReportError(f"{where}.ConfigurationId must be an id of letters, digits, '.', '_', '-'")
        if cid in out:
            raise ReportError(f"{where}.ConfigurationId {cid!r} is repeated")
        impact = item.get("ConfigurationImpact")
        if not isinstance(impact, int | float) or isinstance(impact, bool) or not 1 <= impact <= 10:
            raise ReportError(f"{where}.ConfigurationImpact must be a number from 1 to 10")
        flags = {}
        for key in ("IsApplicable", "IsCompliant", "IsExpectedUserImpact"):
            v = item.get(key, False) if key == "IsExpectedUserImpact" else item.get(key)
            if not isinstance(v, bool):
                raise ReportError(f"{where}.{key} must be true or false")
            flags[key] = v
        texts = {}
        for key, size in (("ConfigurationName", 256), ("ConfigurationCategory", 64), ("ConfigurationSubcategory", 64),
                          ("Evidence", 4 * MAX_EVIDENCE), ("RemediationOptions", 4000)):
            v = item.get(key, "")
            if not isinstance(v, str) or len(v) > size:
                raise ReportError(f"{where}.{key} must be text of at most {size} characters")
            texts[key] = v
        out[cid] = ConfigurationRow(cid, texts["ConfigurationName"], texts["ConfigurationCategory"],
                                    texts["ConfigurationSubcategory"], float(impact), flags["IsApplicable"],
                                    flags["IsCompliant"] and flags["IsApplicable"], flags["IsExpectedUserImpact"],
                                    texts["Evidence"], texts["RemediationOptions"])
    return list(out.values())


def rows_score(rows: Sequence[ConfigurationRow]) -> float:
    """The secure score of stored rows, by the formula of vigil.tvm.configuration.secure_score."""
    total = sum(r.impact for r in rows if r.applicable)
    if not total:
        return 0.0
    return round(100 * sum(r.impact for r in rows if r.applicable and r.compliant) / total, 1)
