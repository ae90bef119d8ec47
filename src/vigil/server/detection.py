"""Live detection: the Sigma engine runs over every stored batch and turns hits into alerts."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vigil.core.alerts import DetectionSource, category
from vigil.detect import RuleHit, RuleSet, load_rules
from vigil.detect.placeholders import PlaceholderFileError, load_placeholders
from vigil.server.ingest import RowsByTable
from vigil.store.alerts import NewHit

log = logging.getLogger("vigil.detect")

BUILTIN_RULES = Path(__file__).resolve().parents[1] / "content" / "rules"

# Columns copied into an alert's evidence: the event and the process behind it.
_EVIDENCE = (
    "Timestamp", "ActionType", "ReportId", "FileName", "FolderPath", "SHA256", "ProcessId",
    "ProcessCommandLine", "ProcessCreationTime", "AccountName", "RemoteIP", "RemotePort", "RemoteUrl",
    "LocalIP", "LocalPort", "PreviousFolderPath", "InitiatingProcessId", "InitiatingProcessFileName",
    "InitiatingProcessFolderPath", "InitiatingProcessCommandLine", "InitiatingProcessSHA256",
    "InitiatingProcessAccountName", "InitiatingProcessParentId", "InitiatingProcessParentFileName",
)


def _jsonable(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return v


def evidence(table: str, row: dict[str, Any]) -> dict[str, Any]:
    ev = {k: _jsonable(row[k]) for k in _EVIDENCE if row.get(k) is not None}
    ev["Table"] = table
    return ev


def load_ruleset(extra_dirs: list[Path], placeholders_file: Path | None = None) -> RuleSet:
    """Vigil's own rules plus the operator's; a broken rule is logged and skipped, never fatal. So is a broken
    placeholder file: the rules that need its values are then skipped, each logged."""
    dirs = [BUILTIN_RULES, *(d for d in extra_dirs if d.exists())]
    placeholders = None
    if placeholders_file is not None:
        try:
            placeholders = load_placeholders(placeholders_file)
        except PlaceholderFileError as e:
            log.error("rule placeholders not loaded: %s", e)
    report = load_rules(dirs, placeholders=placeholders)
    for err in report.errors:
        log.warning("rule skipped: %s", err)
    log.info("detection: %d rules from %s", len(report.ruleset), ", ".join(map(str, dirs)))
    return report.ruleset


class LiveDetection:
    """The ingest pipeline's detector: every row of a batch matched against the rule set."""

    def __init__(self, ruleset: RuleSet) -> None:
        self.ruleset = ruleset

    def hits(self, device_id: str, rows: RowsByTable) -> list[NewHit]:
        out: list[NewHit] = []
        for table, table_rows in rows.items():
            for row in table_rows:
                for h in self.ruleset.match_telemetry(table, row):
                    out.append(self._new_hit(device_id, table, row, h))
        return out

    def _new_hit(self, device_id: str, table: str, row: dict[str, Any], h: RuleHit) -> NewHit:
        return NewHit(
            machine_id=device_id, rule_id=h.rule_id, title=h.title, description=h.description,
            severity=h.severity.value, category=category(h.tactics),
            detection_source=DetectionSource.SIGMA.value, techniques=list(h.techniques),
            event_time=row["Timestamp"], evidence=evidence(table, row),
        )
