"""Alerts: Defender's alert entity, the queue and single alerts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Query, Request

from vigil.core.alerts import AlertStatus
from vigil.core.rbac import Permission
from vigil.core.severity import Severity
from vigil.server.api._json import iso
from vigil.server.auth import Principal, requires, services
from vigil.server.errors import APIError
from vigil.store import alerts as alert_store

router = APIRouter()


def alert_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "incidentId": row.incident_id,
        "machineId": row.machine_id,
        "title": row.title,
        "description": row.description,
        "severity": row.severity,
        "category": row.category,
        "status": row.status,
        "classification": row.classification,
        "determination": row.determination,
        "investigationState": row.investigation_state,
        "detectionSource": row.detection_source,
        "detectorId": row.rule_id,
        "mitreTechniques": list(row.mitre_techniques or []),
        "assignedTo": row.assigned_to,
        "alertCreationTime": iso(row.alert_creation_time),
        "firstEventTime": iso(row.first_event_time),
        "lastEventTime": iso(row.last_event_time),
        "lastUpdateTime": iso(row.last_update_time),
        "resolvedTime": iso(row.resolved_time),
        "eventCount": row.event_count,
        "evidence": list(row.evidence or []),
    }


def query_alerts(
    request: Request, machine_id: str | None = None, status: str | None = None, severity: str | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    svc = services(request)
    since = svc.clock.now() - timedelta(days=30)  # Defender's queue shows the last 30 days
    with svc.engine.connect() as conn:
        rows = alert_store.list_alerts(
            conn, machine_id=machine_id, status=status, severity=severity, since=since, limit=limit
        )
    return [alert_json(r) for r in rows]


@router.get("/alerts")
def alerts_api(
    request: Request,
    status: AlertStatus | None = None,
    severity: Severity | None = None,
    machineId: str | None = None,
    top: int = Query(default=1000, alias="$top", ge=1, le=10_000),
    _: Principal = requires(Permission.VIEW_DATA_SECOPS),
) -> dict[str, Any]:
    value = query_alerts(
        request, machineId, status.value if status else None, severity.value if severity else None, top
    )
    return {"@odata.context": "/api/$metadata#Alerts", "value": value}


@router.get("/alerts/{alert_id}")
def alert_api(alert_id: str, request: Request, _: Principal = requires(Permission.VIEW_DATA_SECOPS)) -> dict[str, Any]:
    return get_alert_json(request, alert_id)


def get_alert_json(request: Request, alert_id: str) -> dict[str, Any]:
    svc = services(request)
    with svc.engine.connect() as conn:
        row = alert_store.get_alert(conn, alert_id)
    if row is None:
        raise APIError(404, "not_found", f"no alert with id {alert_id!r}", field="id")
    return alert_json(row)
