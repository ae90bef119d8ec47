"""The records Vigil streams: Defender's streaming-API shape, one per telemetry row or new alert.

Defender's streaming API sends ``{"time", "tenantId", "operationName": "Publish", "category":
"AdvancedHunting-<Table>", "properties": {<the row's columns>}}``; Vigil adds ``recordId``, the idempotency key:
``<outbox seq>.<index>``, the same on every resend, so a receiver that keeps ids drops duplicates exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ALERTS = "AlertInfo"  # the name destinations choose alerts by, as Defender's advanced-hunting table


@dataclass(frozen=True)
class Record:
    record_id: str
    table: str
    time: str
    properties: Mapping[str, Any]

    @property
    def category(self) -> str:
        return f"AdvancedHunting-{self.table}"

    def streaming(self, tenant_id: str) -> dict[str, Any]:
        return {"recordId": self.record_id, "time": self.time, "tenantId": tenant_id, "operationName": "Publish",
                "category": self.category, "properties": dict(self.properties)}


def alert_properties(alert: Mapping[str, Any]) -> dict[str, Any]:
    """Defender's AlertInfo columns for one Vigil alert (the API's alert fields)."""
    return {
        "Timestamp": alert.get("alertCreationTime"), "AlertId": alert.get("id"), "Title": alert.get("title"),
        "Category": alert.get("category"), "Severity": alert.get("severity"), "ServiceSource": "Vigil",
        "DetectionSource": alert.get("detectionSource"), "AttackTechniques": list(alert.get("mitreTechniques") or ()),
        "DeviceId": alert.get("machineId"), "DetectorId": alert.get("detectorId"),
        "Description": alert.get("description"),
    }
