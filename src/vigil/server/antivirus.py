"""The antivirus on the server: agents' AntivirusDetection rows become alerts; their protection state, machine fields.

An alert per (device, threat) folds repeated detections within the alert window, as Defender's antivirus alerts
do; its title says what happened ("'EICAR_Test_File' malware was prevented"), its evidence names the file, its
SHA-256, the threat and the action taken.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from vigil.core.alerts import DetectionSource
from vigil.core.severity import Severity
from vigil.store.alerts import NewHit

Evidence = Callable[[str, dict[str, Any]], dict[str, Any]]  # detection.evidence, passed in (it imports us)

STATE_KEY = "antivirus_state"  # the agent's health-map key (agent/sensors/antivirus.py)
CATEGORY = "Malware"
_SEVERITY = {"low": Severity.LOW, "medium": Severity.MEDIUM, "high": Severity.HIGH, "severe": Severity.HIGH}
_TYPE_WORD = {"malware": "malware", "pua": "unwanted software", "test": "test file", "heuristic": "malware"}
_OUTCOME = {"Blocked": "prevented", "Quarantined": "prevented", "Removed": "prevented"}


def _short_name(threat: str) -> str:
    """``Virus:DOS/EICAR_Test_File`` → ``EICAR_Test_File``; Defender titles name the family so."""
    return threat.rsplit("/", 1)[-1]


def antivirus_hits(device_id: str, rows: Mapping[str, Sequence[dict[str, Any]]], evidence: Evidence
                   ) -> list[NewHit]:
    out = []
    for row in rows.get("DeviceEvents", ()):
        if row.get("ActionType") != "AntivirusDetection":
            continue
        fields = row.get("AdditionalFields")
        if isinstance(fields, str):  # validated rows carry it as JSON text
            try:
                fields = json.loads(fields)
            except ValueError:
                continue
        if not isinstance(fields, Mapping) or not isinstance(fields.get("ThreatName"), str):
            continue
        threat = str(fields["ThreatName"])
        threat_type = str(fields.get("ThreatType") or "malware")
        taken = str(fields.get("ActionTaken") or "None")
        path = row.get("FolderPath") or fields.get("FolderPath")
        sha256 = row.get("SHA256") or fields.get("SHA256")
        source = str(fields.get("DetectionSource") or "Antivirus")
        outcome = _OUTCOME.get(taken, "detected")
        ev = evidence("DeviceEvents", dict(row))
        ev.update({"ThreatName": threat, "ThreatType": threat_type, "ActionTaken": taken, "DetectionSource": source,
                   "FolderPath": path, "SHA256": sha256, "Member": fields.get("Member")})
        out.append(NewHit(
            machine_id=device_id, rule_id=f"av:{threat}",
            title=f"'{_short_name(threat)}' {_TYPE_WORD.get(threat_type, 'malware')} was {outcome}",
            description=(f"{source} found {threat} ({threat_type}) in {path}"
                         + (f" (archive member {fields['Member']})" if fields.get("Member") else "")
                         + f"; action taken: {taken}."),
            severity=_SEVERITY.get(str(fields.get("Severity")), Severity.MEDIUM).value, category=CATEGORY,
            detection_source=DetectionSource.ANTIVIRUS.value, techniques=[], event_time=row["Timestamp"],
            evidence=ev,
        ))
    return out


class MachineAntivirus(BaseModel):
    """The antivirus fields of a machine (``/api/machines``), as Defender's device antivirus health export names
    them; avMode is Active, Audit or Passive, avRealTimeProtection On or Off."""

    avMode: str | None = None
    avEngineVersion: str | None = None
    avSignatureVersion: str | None = None
    avSignatureUpdateTime: str | None = None
    avRealTimeProtection: str | None = None
    quickScanTime: str | None = None
    fullScanTime: str | None = None


def protection_fields(sensors: Mapping[str, str] | None) -> dict[str, Any]:
    """The machine's antivirus fields, named as Defender's device antivirus health export names them, from the
    protection state the agent reports with its sensor health; all None before an agent has reported one."""
    raw = (sensors or {}).get(STATE_KEY)
    try:
        state = json.loads(raw) if raw else {}
    except ValueError:
        state = {}
    if not isinstance(state, dict):
        state = {}
    mode = state.get("mode")
    last = state.get("lastScans")
    scans: dict[str, Any] = last if isinstance(last, dict) else {}
    rtp = state.get("realTimeProtection")
    return {
        "avMode": {"block": "Active", "audit": "Audit", "passive": "Passive"}.get(str(mode)) if mode else None,
        "avEngineVersion": state.get("engineVersion"),
        "avSignatureVersion": str(state["definitionsVersion"]) if "definitionsVersion" in state else None,
        "avSignatureUpdateTime": state.get("definitionsCreated"),
        "avRealTimeProtection": ("On" if rtp else "Off") if rtp is not None else None,
        "quickScanTime": scans.get("quick"),
        "fullScanTime": scans.get("full"),
    }
