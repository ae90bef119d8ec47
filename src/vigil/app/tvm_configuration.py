"""Secure configuration on the server: the agents' SecureConfigurationAssessment rows applied as they arrive, and
the reads the API and portal make — each device's assessment in Defender's export fields, the secure
(configuration) score of a device and of the organisation, and a ConfigurationChange recommendation per failing
check — always within the caller's device groups.

    device secure score  = 100 · Σ impact of its compliant checks / Σ impact of its applicable checks
    organisation's score = the mean over the visible devices that sent an assessment
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from vigil.app.errors import NotFound
from vigil.app.ports import Store
from vigil.app.principal import Principal
from vigil.core.clock import Clock
from vigil.core.rbac import Permission
from vigil.store import tvm as db
from vigil.tvm.configuration_report import CONFIGURATION_ACTION, ConfigurationRow, ReportError, read_report, rows_score

log = logging.getLogger("vigil.tvm")


def recommendation_id(configuration_id: str) -> str:
    return f"sca-_-{configuration_id}"


class SecureConfigurationReads:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store, self.clock = store, clock

    def on_batch(self, device_id: str, rows: Mapping[str, Sequence[Mapping[str, Any]]]) -> int:
        """Store the newest SecureConfigurationAssessment row of a batch; a bad row is logged with its field and
        skipped (the batch is stored either way). Returns 1 when the device's assessment was replaced."""
        found = [r for r in rows.get("DeviceEvents", ()) if r.get("ActionType") == CONFIGURATION_ACTION]
        if not found:
            return 0
        row = max(found, key=lambda r: r.get("ReportId") or 0)
        try:
            parsed = read_report(row.get("AdditionalFields"))
        except ReportError as e:
            log.warning("tvm: device %s SecureConfigurationAssessment row %s refused: %s", device_id,
                        row.get("ReportId"), e)
            return 0
        with self.store.begin() as uow:
            replaced = db.replace_configuration(uow.conn, device_id, parsed,  # type: ignore[attr-defined]
                                                _timestamp(row.get("Timestamp"), self.clock.now()))
        return int(replaced)

    def _rows(self, principal: Principal, device_id: str | None = None) -> list[dict[str, Any]]:
        principal.require(Permission.VIEW_DATA_TVM)
        with self.store.begin() as uow:
            conn = uow.conn  # type: ignore[attr-defined]
            if device_id is not None:
                group = db.device_group(conn, device_id)
                if group is None or not principal.sees_group(group):
                    raise NotFound(f"no machine {device_id!r}")
            rows = db.scoped_configuration(conn, principal.device_group_ids, device_id)
            names = dict(conn.exec_driver_sql("SELECT id, name FROM device_groups").all())
        for r in rows:
            r["RbacGroupName"] = names.get(r["group_id"], "")
        return rows

    def assessments(self, principal: Principal, device_id: str | None = None) -> list[dict[str, Any]]:
        """Defender's export fields (SecureConfigurationsAssessmentByMachine), one per device and check, with
        Vigil's evidence and fix."""
        return [_export(r) for r in self._rows(principal, device_id)]

    def device_scores(self, principal: Principal) -> dict[str, float]:
        by_device: dict[str, list[ConfigurationRow]] = {}
        for r in self._rows(principal):
            by_device.setdefault(r["DeviceId"], []).append(_row(r))
        return {d: rows_score(rs) for d, rs in by_device.items()}

    def device_score(self, principal: Principal, device_id: str) -> float | None:
        rows = self._rows(principal, device_id)
        return rows_score([_row(r) for r in rows]) if rows else None

    def configuration_score(self, principal: Principal) -> dict[str, Any]:
        """Defender's /api/configurationScore: the organisation's secure score, 0-100."""
        scores = self.device_scores(principal)
        score = round(sum(scores.values()) / len(scores), 1) if scores else 0.0
        return {"time": _iso(self.clock.now()), "score": score, "rbacGroupId": None, "devices": len(scores)}

    def recommendations(self, principal: Principal) -> list[dict[str, Any]]:
        """One ConfigurationChange recommendation per check that fails on a visible device."""
        rows = self._rows(principal)
        devices = {r["DeviceId"] for r in rows}
        failing: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            if r["IsApplicable"] and not r["IsCompliant"]:
                failing.setdefault(r["ConfigurationId"], []).append(r)
        out = []
        for cid, fails in failing.items():
            first = fails[0]
            impact = float(first["ConfigurationImpact"] or 0)
            out.append({
                "id": recommendation_id(cid), "productName": None, "recommendationName": first["ConfigurationName"],
                "vendor": None, "recommendedVersion": None, "recommendedProgram": None,
                "recommendationCategory": first["ConfigurationCategory"], "subCategory":
                first["ConfigurationSubcategory"], "severityScore": impact, "publicExploit": False,
                "activeAlert": False, "associatedThreats": [], "remediationType": "ConfigurationChange",
                "status": "Active", "configScoreImpact": impact, "exposureImpact": 0.0,
                "totalMachineCount": len(devices), "exposedMachinesCount": len(fails), "nonProductivityImpactedAssets":
                sum(1 for f in fails if f["IsExpectedUserImpact"]), "relatedComponent": cid, "weaknesses": 0,
                "knownExploitedCount": 0, "cveIds": [], "exposedMachineIds": sorted(f["DeviceId"] for f in fails),
                "remediation": first["RemediationOptions"],
                "summary": f"{first['ConfigurationName']} ({cid}) on {len(fails)} device"
                           f"{'s' if len(fails) != 1 else ''}: {first['RemediationOptions']}"})
        out.sort(key=lambda r: (-r["configScoreImpact"] * r["exposedMachinesCount"], r["id"]))
        return out

    def failing_devices(self, principal: Principal, rec_id: str) -> set[str]:
        """The visible devices on which the check behind a configuration recommendation still fails."""
        cid = rec_id.removeprefix("sca-_-")
        return {r["DeviceId"] for r in self._rows(principal)
                if r["ConfigurationId"] == cid and r["IsApplicable"] and not r["IsCompliant"]}


def _row(r: Mapping[str, Any]) -> ConfigurationRow:
    return ConfigurationRow(r["ConfigurationId"], r["ConfigurationName"] or "", r["ConfigurationCategory"] or "",
                            r["ConfigurationSubcategory"] or "", float(r["ConfigurationImpact"] or 0),
                            bool(r["IsApplicable"]), bool(r["IsCompliant"]), bool(r["IsExpectedUserImpact"]),
                            " ".join(r["Context"]), r["RemediationOptions"] or "")


def _export(r: Mapping[str, Any]) -> dict[str, Any]:
    return {"DeviceId": r["DeviceId"], "DeviceName": r["DeviceName"], "OSPlatform": r["OSPlatform"],
            "OSVersion": r["os_version"], "Timestamp": _iso(r["Timestamp"]), "ConfigurationId": r["ConfigurationId"],
            "ConfigurationName": r["ConfigurationName"], "ConfigurationCategory": r["ConfigurationCategory"],
            "ConfigurationSubcategory": r["ConfigurationSubcategory"],
            "ConfigurationImpact": r["ConfigurationImpact"], "IsApplicable": bool(r["IsApplicable"]),
            "IsCompliant": bool(r["IsCompliant"]), "IsExpectedUserImpact": bool(r["IsExpectedUserImpact"]),
            "RbacGroupId": r["group_id"], "RbacGroupName": r["RbacGroupName"],
            "RecommendationReference": recommendation_id(r["ConfigurationId"]), "Context": r["Context"],
            "Evidence": " ".join(r["Context"]), "RemediationOptions": r["RemediationOptions"]}


def _timestamp(value: Any, default: datetime) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            t = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return default
        return t if t.tzinfo is not None else t.replace(tzinfo=UTC)
    return default


def _iso(t: datetime | None) -> str | None:
    if t is None:
        return None
    t = t if t.tzinfo is not None else t.replace(tzinfo=UTC)
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")
