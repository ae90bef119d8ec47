"""Live detection: the Sigma engine runs over every stored batch and turns hits into alerts."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from vigil.content.store import ContentError, ContentStore, with_levels
from vigil.core.alerts import DetectionSource, category
from vigil.detect import RuleHit, RuleSet, load_rules
from vigil.detect.correlation import CorrelationEngine, CorrelationHit, parse_time
from vigil.detect.model import RuleInfo
from vigil.detect.placeholders import PlaceholderFileError, load_placeholders
from vigil.server.antivirus import antivirus_hits
from vigil.server.ingest import RowsByTable
from vigil.server.protection_alerts import ProtectionAlerts
from vigil.store.alerts import NewHit
from vigil.store.schema import device_groups, devices

log = logging.getLogger("vigil.detect")

BUILTIN_RULES = Path(__file__).resolve().parents[1] / "content" / "rules"

# Columns copied into an alert's evidence: the event and the process behind it.
_EVIDENCE = (
    "Timestamp", "ActionType", "ReportId", "FileName", "FolderPath", "SHA256", "ProcessId",
    "ProcessCommandLine", "ProcessCreationTime", "AccountName", "RemoteIP", "RemotePort", "RemoteUrl",
    "LocalIP", "LocalPort", "PreviousFolderPath", "InitiatingProcessId", "InitiatingProcessFileName",
    "InitiatingProcessFolderPath", "InitiatingProcessCommandLine", "InitiatingProcessSHA256",
    "InitiatingProcessAccountName", "InitiatingProcessParentId", "InitiatingProcessParentFileName",
    "ProcessGroupId", "ProcessStdin", "ProcessStdout", "PipelineMembers",
)


def _jsonable(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return v


def evidence(table: str, row: dict[str, Any]) -> dict[str, Any]:
    ev = {k: _jsonable(row[k]) for k in _EVIDENCE if row.get(k) is not None}
    ev["Table"] = table
    return ev


def load_ruleset(extra_dirs: list[Path], placeholders_file: Path | None = None,
                 content: ContentStore | None = None, group: str | None = None) -> RuleSet:
    """Vigil's own rules plus the operator's, and the content store's that run for device group `group` (None:
    store-wide) at their levels; a broken rule is logged and skipped, never fatal. So is a broken placeholder
    file: the rules that need its values are then skipped, each logged."""
    dirs: list[Path] = [BUILTIN_RULES, *(d for d in extra_dirs if d.exists())]
    levels: dict[str, Any] = {}
    if content is not None:
        try:
            files, levels = content.selection(group)
        except ContentError as e:
            log.error("rule content store not used: %s", e)
        else:
            dirs += files
    placeholders = None
    if placeholders_file is not None:
        try:
            placeholders = load_placeholders(placeholders_file)
        except PlaceholderFileError as e:
            log.error("rule placeholders not loaded: %s", e)
    report = load_rules(dirs, placeholders=placeholders)
    for err in report.errors:
        log.warning("rule skipped: %s", err)
    log.info("detection%s: %d rules from %d paths", f" for device group {group}" if group else "",
             len(report.ruleset), len(dirs))
    return with_levels(report.ruleset, levels)


def device_group_lookup(engine: sa.Engine, ttl: float = 60.0) -> Callable[[str], str | None]:
    """A device's group name by its id, read again after `ttl` seconds (group rules may move a device)."""
    seen: dict[str, tuple[float, str | None]] = {}

    def group_of(device_id: str) -> str | None:
        now = time.monotonic()
        hit = seen.get(device_id)
        if hit is not None and now - hit[0] < ttl:
            return hit[1]
        query = (sa.select(device_groups.c.name).select_from(devices.join(device_groups))
                 .where(devices.c.id == device_id))
        with engine.connect() as conn:
            name = conn.execute(query).scalar()
        if len(seen) > 100_000:
            seen.clear()
        seen[device_id] = (now, name)
        return name

    return group_of


class _Correlations:
    """A rule set's correlation rules run over the hits of every batch (streaming, one engine per rule set).

    Rows are fed once per device in ReportId order: a resent batch (or a held one sent again after later batches)
    is not fed again, so a resend can neither count twice nor fire twice. Windows older than their timespan are
    dropped every `EXPIRE_SECONDS`, from the server's clock with `SKEW` of slack for agents' clocks."""

    EXPIRE_SECONDS = 30.0
    SKEW = timedelta(minutes=5)

    def __init__(self, ruleset: RuleSet) -> None:
        self.engine = CorrelationEngine(ruleset.correlations)
        # Sigma's `generate: false` (its default): the rules a correlation uses report no alert of their own.
        generating = {r for c in ruleset.correlations if c.generate for r in c.rules}
        self.feeding_only = {r for c in ruleset.correlations if not c.generate for r in c.rules} - generating
        self._fed: dict[str, int] = {}
        self._lock = threading.Lock()
        self._expired = time.monotonic()

    def observe(self, device_id: str, hits: list[tuple[str, str, dict[str, Any]]]) -> list[tuple[
            CorrelationHit, str, dict[str, Any]]]:
        """Feed (rule id, table, row) hits of one batch; the correlations that fire, each with its last event."""
        timed = []
        for rule_id, table, row in hits:
            at = parse_time(row.get("Timestamp"))
            if at is not None:
                timed.append((at, rule_id, table, row))
        timed.sort(key=lambda t: (t[0], int(t[3].get("ReportId") or 0)))
        out: list[tuple[CorrelationHit, str, dict[str, Any]]] = []
        with self._lock:
            last = self._fed.get(device_id, -1)
            top = last
            for at, rule_id, table, row in timed:
                report = int(row.get("ReportId") or 0)
                if report <= last:
                    continue
                top = max(top, report)
                out.extend((c, table, row) for c in self.engine.observe(rule_id, row, at))
            self._fed[device_id] = top
            if time.monotonic() - self._expired > self.EXPIRE_SECONDS:
                self.engine.expire(datetime.now(UTC) - self.SKEW)
                self._expired = time.monotonic()
        return out


class LiveDetection:
    """The ingest pipeline's detector: every row of a batch matched against the rule set, and the rule set's
    correlation rules run over the hits (docs/detection.md, Correlation rules)."""

    def __init__(self, ruleset: RuleSet, by_group: Mapping[str, RuleSet] | None = None,
                 group_of: Callable[[str], str | None] | None = None,
                 protection: ProtectionAlerts | None = None) -> None:
        """`by_group`: the rule sets of device groups whose content settings differ from the store-wide ones
        (`ruleset`), chosen per batch by the device's group (`group_of`). `protection`: ASR decisions and indicator
        matches as alerts (server/protection_alerts.py)."""
        self.protection = protection
        self.ruleset = ruleset
        self.by_group = dict(by_group or {})
        self.group_of = group_of
        self._correlations: dict[int, tuple[RuleSet, _Correlations]] = {}
        self._lock = threading.Lock()

    def replace(self, ruleset: RuleSet, by_group: Mapping[str, RuleSet]) -> None:
        """Run these rule sets from the next batch on (a batch being matched finishes on the old ones); their
        correlations start with empty windows."""
        self.ruleset, self.by_group = ruleset, dict(by_group)
        with self._lock:
            self._correlations = {}

    def _correlations_of(self, ruleset: RuleSet) -> _Correlations | None:
        if not ruleset.correlations:
            return None
        with self._lock:
            entry = self._correlations.get(id(ruleset))
            if entry is None or entry[0] is not ruleset:
                entry = (ruleset, _Correlations(ruleset))
                self._correlations[id(ruleset)] = entry
            return entry[1]

    def hits(self, device_id: str, rows: RowsByTable) -> list[NewHit]:
        ruleset = self.ruleset
        if self.by_group and self.group_of is not None:
            ruleset = self.by_group.get(self.group_of(device_id) or "", self.ruleset)
        correlations = self._correlations_of(ruleset)
        out: list[NewHit] = antivirus_hits(device_id, rows, evidence)  # the agents' antivirus detections
        if self.protection is not None:  # ASR blocks and indicator matches
            out += [NewHit(**vars(h)) for h in self.protection.hits(device_id, rows, evidence)]
        fed: list[tuple[str, str, dict[str, Any]]] = []
        for table, table_rows in rows.items():
            for row in table_rows:
                for h in ruleset.match_telemetry(table, row):
                    if correlations is None:
                        out.append(self._new_hit(device_id, table, row, h))
                        continue
                    if h.rule_id not in correlations.feeding_only:
                        out.append(self._new_hit(device_id, table, row, h))
                    if correlations.engine.wants(h.rule_id):
                        fed.append((h.rule_id, table, row))
        if correlations is not None and fed:
            for c, table, row in correlations.observe(device_id, fed):
                out.append(self._correlation_hit(device_id, table, row, c))
        return out

    def windows_hits(self, device_id: str, events: list[tuple[dict[str, Any], datetime]]) -> list[NewHit]:
        """What flat Windows events (shipped by Winlogbeat or Fluent Bit) raise: the Windows rules match them as
        ``vigil triage`` matches EVTX records; the evidence is the event as the rules saw it."""
        ruleset = self.ruleset
        if self.by_group and self.group_of is not None:
            ruleset = self.by_group.get(self.group_of(device_id) or "", self.ruleset)
        out = []
        for flat, at in events:
            for h in ruleset.match_windows(flat):
                out.append(NewHit(
                    machine_id=device_id, rule_id=h.rule_id, title=h.title, description=h.description,
                    severity=h.severity.value, category=category(h.tactics),
                    detection_source=DetectionSource.SIGMA.value, techniques=list(h.techniques),
                    event_time=at, evidence={"Table": "WindowsEvent", **{k: _jsonable(v) for k, v in flat.items()}},
                ))
        return out

    def _correlation_hit(self, device_id: str, table: str, row: dict[str, Any], c: CorrelationHit) -> NewHit:
        info: RuleInfo = c.correlation.info
        ev = evidence(table, row)
        ev["Correlation"] = {"type": c.correlation.kind.value, "events": c.events, "first": _jsonable(c.first),
                             "last": _jsonable(c.last), "group": {k: v for k, v in c.group}}
        return NewHit(
            machine_id=device_id, rule_id=info.id, title=info.title, description=info.description,
            severity=info.level.severity.value, category=category(info.tactics),
            detection_source=DetectionSource.SIGMA.value, techniques=list(info.techniques),
            event_time=row["Timestamp"], evidence=ev,
        )

    def _new_hit(self, device_id: str, table: str, row: dict[str, Any], h: RuleHit) -> NewHit:
        return NewHit(
            machine_id=device_id, rule_id=h.rule_id, title=h.title, description=h.description,
            severity=h.severity.value, category=category(h.tactics),
            detection_source=DetectionSource.SIGMA.value, techniques=list(h.techniques),
            event_time=row["Timestamp"], evidence=evidence(table, row),
        )
