"""Custom detection rules: a hunting query (SQL or the KQL subset) on Defender's schedule, whose result rows
become alerts with the rule's title, severity, category and ATT&CK techniques.

Pure: the schedule and its lookbacks, the checks of a rule's fields, the wrapping of its query to the lookback,
and which result rows are hits. The service (``vigil.app.detections``) runs it and stores the alerts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from vigil.hunt import kql

# Defender's periods and the data each run looks back over.
LOOKBACK: dict[str, timedelta] = {
    "1H": timedelta(hours=4), "3H": timedelta(hours=12), "12H": timedelta(hours=48), "24H": timedelta(days=30),
}
PERIOD: dict[str, timedelta] = {"1H": timedelta(hours=1), "3H": timedelta(hours=3), "12H": timedelta(hours=12),
                                "24H": timedelta(hours=24)}
# The columns Defender requires in a custom detection's results: what the alert is about and its dedup key.
REQUIRED_COLUMNS = ("Timestamp", "DeviceId", "ReportId")
SEVERITIES = ("Informational", "Low", "Medium", "High")
# Consecutive failed runs after which a rule is switched off (and the admins told by an alert).
MAX_FAILURES = 3
_TECHNIQUE = re.compile(r"T\d{4}(\.\d{3})?")
# Automatic actions a rule may name: each runs through the response-action service on the devices (or files) of
# a run's new hits. Those Vigil cannot run automatically are refused with the reason, never dropped silently.
RESPONSE_ACTIONS = ("isolateDevice", "collectInvestigationPackage", "runAntivirusScan", "restrictAppExecution",
                    "stopAndQuarantineFile", "initiateInvestigation")
UNAVAILABLE_ACTIONS = {
    "addIndicator": "not run automatically: an indicator needs a reviewed value and scope; add it under Indicators",
    "blockFile": "not run automatically: use addIndicator's page (Indicators) to block a file hash",
    "markUserAsCompromised": "Vigil has no identity provider to mark users in",
    "disableUser": "Vigil has no identity provider to disable users in",
    "forceUserPasswordReset": "Vigil has no identity provider to reset passwords in",
}
_GRAPH_ACTION = re.compile(r"#?microsoft\.graph\.security\.(\w+)ResponseAction")

class DetectionError(ValueError):
    """A rule field Vigil refuses; ``field`` names it (Defender's JSON path)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


@dataclass(frozen=True)
class RuleFields:
    """What a user sets on a rule, checked."""

    display_name: str
    query_text: str
    period: str
    enabled: bool
    title: str
    description: str
    severity: str
    category: str
    techniques: tuple[str, ...]
    response_actions: tuple[str, ...] = ()


def action_name(value: str) -> str:
    """A response action's name from Vigil's short form or Graph's ``@odata.type``
    (``#microsoft.graph.security.isolateDeviceResponseAction`` is ``isolateDevice``)."""
    m = _GRAPH_ACTION.fullmatch(value.strip())
    return m.group(1) if m else value.strip()


def check_fields(display_name: str, query_text: str, period: str, enabled: bool, title: str, description: str,
                 severity: str, category: str, techniques: Sequence[str],
                 response_actions: Sequence[str] = ()) -> RuleFields:
    """The rule's fields normalized, or DetectionError naming the first bad one."""
    if not display_name.strip():
        raise DetectionError("displayName", "give the rule a name")
    if not query_text.strip():
        raise DetectionError("queryCondition.queryText", "give the rule a hunting query")
    p = period.strip().upper()
    if p in ("0", "NRT", "CONTINUOUS"):
        raise DetectionError("schedule.period", "continuous (near real-time) runs are for Sigma rules (vigil rules); "
                                                f"a hunting query runs every {', '.join(PERIOD)}")
    if p not in PERIOD:
        raise DetectionError("schedule.period", f"use one of {', '.join(PERIOD)} (every 1, 3, 12 or 24 hours)")
    if not title.strip():
        raise DetectionError("detectionAction.alertTemplate.title", "give the alert a title")
    sev = next((s for s in SEVERITIES if s.lower() == severity.strip().lower()), None)
    if sev is None:
        raise DetectionError("detectionAction.alertTemplate.severity", f"use one of {', '.join(SEVERITIES)}")
    out = []
    for i, t in enumerate(techniques):
        t = t.strip().upper()
        if not _TECHNIQUE.fullmatch(t):
            raise DetectionError(f"detectionAction.alertTemplate.mitreTechniques[{i}]",
                                 f"{t!r} is not an ATT&CK technique id such as T1059 or T1059.004")
        out.append(t)
    actions = []
    for i, a in enumerate(response_actions):
        name = action_name(a)
        if name in UNAVAILABLE_ACTIONS:
            raise DetectionError(f"detectionAction.responseActions[{i}]", f"{name}: {UNAVAILABLE_ACTIONS[name]}")
        if name not in RESPONSE_ACTIONS:
            raise DetectionError(f"detectionAction.responseActions[{i}]",
                                 f"unknown action {a!r}; known: {', '.join(RESPONSE_ACTIONS)}")
        actions.append(name)
    return RuleFields(display_name.strip(), query_text.strip(), p, enabled, title.strip(), description.strip(), sev,
                      category.strip() or "Suspicious activity", tuple(dict.fromkeys(out)),
                      tuple(dict.fromkeys(actions)))


def due(period: str, last_run_at: datetime | None, now: datetime) -> bool:
    return last_run_at is None or now - last_run_at >= PERIOD[period]


def query_sql(query_text: str, period: str, now: datetime, dialect: str = "sqlite") -> str:
    """The rule's query as SQL limited to its lookback (then checked and scoped like any hunting query)."""
    sql = (kql.to_sql(query_text, now, dialect) if kql.looks_like_kql(query_text)
           else query_text.rstrip().rstrip(";"))
    since = (now - LOOKBACK[period]).strftime("%Y-%m-%d %H:%M:%S.%f") + "+00:00"
    return f"SELECT * FROM ({sql}) AS detection WHERE detection.Timestamp >= '{since}'"


@dataclass(frozen=True)
class Hit:
    device_id: str
    report_id: str
    row: dict[str, Any]


def hits_of(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> list[Hit]:
    """One hit per distinct (DeviceId, ReportId); a result without the required columns is refused."""
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise DetectionError("queryCondition.queryText",
                             f"the results need the columns {', '.join(REQUIRED_COLUMNS)} (missing "
                             f"{', '.join(missing)}), as Defender's custom detections do")
    seen: dict[tuple[str, str], Hit] = {}
    for r in rows:
        if r.get("DeviceId") is None or r.get("ReportId") is None:
            continue
        key = (str(r["DeviceId"]), str(r["ReportId"]))
        seen.setdefault(key, Hit(key[0], key[1], dict(r)))
    return list(seen.values())
