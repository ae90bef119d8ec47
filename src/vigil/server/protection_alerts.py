"""ASR and indicator alerts on the server: what the agents' protection did, and what telemetry matches an indicator.

ASR: a ``DeviceEvents`` row ``Asr<Rule>Blocked|Warned|Terminated|TerminationFailed`` (the agent's decisions in
Block or Warn mode; Audit rows raise nothing) becomes an alert whose detectorId is the rule's GUID, with the
rule's ATT&CK technique and tactic, the device, and the process in its evidence. A ``Asr<Rule>WarnOverridden`` row
(a Warn override granted on the device with ``vigil agent asr-override``) is written to the server's audit log as
``asr.warn.override``, so an override is never only local.

Indicators: every stored row is matched against every indicator that applies to its device (the file's and the
initiating process's SHA-256, the remote address, the remote URL and its host), whether or not the agent could
enforce it, so nothing is only enforced and never seen. An indicator whose generateAlert is set (or whose
action was given as Defender's legacy Alert / AlertAndBlock) raises an alert per (device, indicator) when it wins
(vigil.asr.indicators: Allowed wins over everything, expired ones do not apply). The agent's own
``FileIndicator*`` and ``ExploitGuardNetworkProtection*`` rows name their indicator and match it by id.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from vigil.app.ports import AuditRecord, Store
from vigil.asr import UnknownAsrRule, find
from vigil.asr.indicators import Indicator, IndicatorAction, IndicatorSet, Observation
from vigil.core.alerts import SUSPICIOUS_ACTIVITY, DetectionSource
from vigil.core.clock import Clock
from vigil.core.severity import Severity

log = logging.getLogger("vigil.protection")

Evidence = Callable[[str, dict[str, Any]], dict[str, Any]]  # detection.evidence, passed in (it imports us)


@dataclass(frozen=True)
class NewHit:
    """An alert to raise: the fields of vigil.store.alerts.NewHit, which detection builds from it (the server
    reaches the store only there)."""

    machine_id: str
    rule_id: str
    title: str
    description: str
    severity: str
    category: str
    detection_source: str
    techniques: list[str]
    event_time: datetime
    evidence: dict[str, Any]

# The agent's outcome suffix → the verb of the alert's title; Audited raises nothing.
_ASR_OUTCOMES = {"Blocked": "blocked", "Warned": "warned about and stopped", "Terminated": "terminated",
                 "TerminationFailed": "failed to terminate"}
OVERRIDE_SUFFIX = "WarnOverridden"
OVERRIDE_AUDIT = "asr.warn.override"
_SEVERITY = {"Informational": Severity.INFORMATIONAL, "Low": Severity.LOW, "Medium": Severity.MEDIUM,
             "High": Severity.HIGH}


def fields_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row's AdditionalFields as a dict (validated rows carry it as JSON text); empty when it is not one."""
    raw = row.get("AdditionalFields")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return {}
    return dict(raw) if isinstance(raw, Mapping) else {}


def _outcome(action: str, rule_name: str) -> str:
    prefix = f"Asr{rule_name}"
    return action[len(prefix):] if action.startswith(prefix) else ""


def asr_hits(device_id: str, rows: Mapping[str, Sequence[dict[str, Any]]], evidence: Evidence) -> list[NewHit]:
    """An alert per ASR decision in Block or Warn mode (blocked, warned, terminated, or a failed termination)."""
    out = []
    for row in rows.get("DeviceEvents", ()):
        action = str(row.get("ActionType") or "")
        if not action.startswith("Asr"):
            continue
        fields = fields_of(row)
        try:
            rule = find(str(fields.get("RuleId") or fields.get("RuleName") or ""))
        except UnknownAsrRule:
            continue
        outcome = _outcome(action, rule.name)
        verb = _ASR_OUTCOMES.get(outcome)
        if verb is None:
            continue
        target = row.get("FolderPath") or row.get("FileName") or "a process"
        parent = row.get("InitiatingProcessFolderPath") or row.get("InitiatingProcessFileName") or "unknown"
        ev = evidence("DeviceEvents", dict(row))
        ev.update({"RuleId": rule.guid, "RuleName": rule.name, "RuleTitle": rule.title,
                   "Mode": fields.get("Mode"), "Outcome": outcome})
        if fields.get("Detail"):
            ev["Detail"] = fields["Detail"]
        out.append(NewHit(
            machine_id=device_id, rule_id=rule.guid,
            title=f"ASR rule '{rule.title}' {verb} {target}",
            description=(f"Attack surface reduction rule {rule.name} ({rule.guid}, {fields.get('Mode') or 'Block'}"
                         f" mode) {verb} {target}, started by {parent}. {rule.description}"),
            severity=(Severity.LOW if outcome == "Warned" else Severity.MEDIUM).value,
            category=rule.tactic or SUSPICIOUS_ACTIVITY, detection_source=DetectionSource.ASR.value,
            techniques=[rule.technique], event_time=row["Timestamp"], evidence=ev,
        ))
    return out


def overrides(device_id: str, rows: Mapping[str, Sequence[dict[str, Any]]]) -> list[AuditRecord]:
    """The audit records of the Warn overrides a batch reports (``Asr<Rule>WarnOverridden`` rows)."""
    out = []
    for row in rows.get("DeviceEvents", ()):
        action = str(row.get("ActionType") or "")
        if not (action.startswith("Asr") and action.endswith(OVERRIDE_SUFFIX)):
            continue
        fields = fields_of(row)
        granted_by = str(fields.get("GrantedBy") or row.get("AccountName") or "unknown")
        details = {k: fields.get(k) for k in ("RuleId", "RuleName", "Path", "Process", "Expires", "Reason",
                                                "OverrideId") if fields.get(k) is not None}
        details["DeviceId"] = device_id
        out.append(AuditRecord(actor=f"device:{device_id} ({granted_by})", action=OVERRIDE_AUDIT,
                               target_type="asrRule", target_id=str(fields.get("RuleId") or action),
                               after=details, reason=str(fields.get("Reason") or "") or None))
    return out


def _category(ind: Indicator) -> str:
    return ind.extra.get("Category") or SUSPICIOUS_ACTIVITY


def _techniques(ind: Indicator) -> list[str]:
    text = ind.extra.get("MitreTechniques", "")
    return [t.strip() for t in text.replace(";", ",").split(",") if t.strip()]


def _observations(table: str, row: Mapping[str, Any]) -> list[tuple[str, Observation]]:
    """What one row offers: (the column it came from, the observation)."""
    out = []
    for column in ("SHA256", "InitiatingProcessSHA256"):
        value = row.get(column)
        if isinstance(value, str) and len(value) == 64:
            out.append((column, Observation(sha256=value)))
    ip, url = row.get("RemoteIP"), row.get("RemoteUrl")
    if table != "DeviceLogonEvents" and isinstance(ip, str) and ip:
        out.append(("RemoteIP", Observation(ip=ip)))
    if isinstance(url, str) and url:
        out.append(("RemoteUrl", Observation(url=url)))
    return out


def indicator_hits(device_id: str, group_id: int | None, rows: Mapping[str, Sequence[dict[str, Any]]],
                   indicators: IndicatorSet, by_id: Mapping[int, Indicator], now: datetime,
                   evidence: Evidence) -> list[NewHit]:
    """An alert per row that matches an alerting indicator applying to the device (Allowed winning)."""
    out = []
    for table, table_rows in rows.items():
        for row in table_rows:
            found: Indicator | None = None
            matched_on = ""
            named = fields_of(row).get("IndicatorId") if table == "DeviceEvents" else None
            if isinstance(named, int) and named in by_id:  # the agent's own enforcement row names it
                found, matched_on = by_id[named], "IndicatorId"
            else:
                for column, ob in _observations(table, row):
                    verdict = indicators.verdict(ob, now, group_id)
                    if verdict is not None and verdict.action is not IndicatorAction.ALLOWED:
                        found, matched_on = verdict.indicator, column
                        break
            if found is None or not found.generate_alert:
                continue
            ev = evidence(table, dict(row))
            ev.update({"IndicatorId": found.id, "IndicatorType": found.indicator_type.value,
                       "IndicatorValue": found.indicator_value, "IndicatorAction": found.action.value,
                       "MatchedOn": matched_on})
            out.append(NewHit(
                machine_id=device_id, rule_id=f"indicator:{found.id}",
                title=found.title,
                description=(found.description or f"Telemetry matched the {found.indicator_type.value} indicator"
                             f" {found.indicator_value} (action {found.action.value}) on {matched_on}."),
                severity=_SEVERITY.get(found.severity, Severity.INFORMATIONAL).value, category=_category(found),
                detection_source=DetectionSource.INDICATOR.value, techniques=_techniques(found),
                event_time=row["Timestamp"], evidence=ev,
            ))
    return out


class ProtectionAlerts:
    """The server's view of indicators (re-read every ``ttl`` seconds) and devices' groups, for ingest."""

    def __init__(self, store: Store, clock: Clock, ttl: float = 10.0) -> None:
        self.store, self.clock, self.ttl = store, clock, ttl
        self._lock = threading.Lock()
        self._loaded = -1.0
        self._set = IndicatorSet(())
        self._by_id: dict[int, Indicator] = {}
        self._groups: dict[str, tuple[float, int | None]] = {}

    def invalidate(self) -> None:
        with self._lock:
            self._loaded = -1.0

    def _indicators(self) -> tuple[IndicatorSet, dict[int, Indicator]]:
        now = time.monotonic()
        with self._lock:
            if self._loaded >= 0 and now - self._loaded < self.ttl:
                return self._set, self._by_id
        with self.store.begin() as uow:
            found = [r.indicator for r in uow.asr.indicators()]
        with self._lock:
            self._set = IndicatorSet(found)
            self._by_id = {i.id: i for i in found if i.id is not None}
            self._loaded = now
            return self._set, self._by_id

    def _group_of(self, device_id: str) -> int | None:
        now = time.monotonic()
        hit = self._groups.get(device_id)
        if hit is not None and now - hit[0] < max(self.ttl, 60.0):
            return hit[1]
        with self.store.begin() as uow:
            device = uow.devices.get(device_id)
        group = device.group_id if device is not None else None
        if len(self._groups) > 100_000:
            self._groups.clear()
        self._groups[device_id] = (now, group)
        return group

    def hits(self, device_id: str, rows: Mapping[str, Sequence[dict[str, Any]]], evidence: Evidence
             ) -> list[NewHit]:
        out = asr_hits(device_id, rows, evidence)
        matcher, by_id = self._indicators()
        if by_id:
            out += indicator_hits(device_id, self._group_of(device_id), rows, matcher, by_id,
                                  self.clock.now().astimezone(UTC), evidence)
        return out

    def after_store(self, device_id: str, rows: Mapping[str, Sequence[dict[str, Any]]]) -> None:
        """After a batch is stored: its Warn overrides written to the server's audit log."""
        records = overrides(device_id, rows)
        if not records:
            return
        now = self.clock.now()
        with self.store.begin() as uow:
            for record in records:
                uow.audit.append(record, now)
