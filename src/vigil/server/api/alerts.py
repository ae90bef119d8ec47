"""Alerts: Defender's alert entity, the queue and single alerts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from vigil.core.alerts import AlertStatus, Classification, Determination
from vigil.core.rbac import Permission
from vigil.core.severity import Severity
from vigil.server.api._json import iso
from vigil.server.auth import Principal, requires, services
from vigil.server.errors import APIError
from vigil.server.scope import device_filter, principal_of
from vigil.store import alerts as alert_store
from vigil.store.schema import alerts

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
    limit: int = 1000, incident_id: int | None = None,
) -> list[dict[str, Any]]:
    svc = services(request)
    since = svc.clock.now() - timedelta(days=30)  # Defender's queue shows the last 30 days
    with svc.engine.connect() as conn:
        rows = alert_store.list_alerts(
            conn, machine_id=machine_id, status=status, severity=severity, since=since, limit=limit,
            incident_id=incident_id, scope=device_filter(principal_of(request), alerts.c.machine_id),
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
        row = alert_store.get_alert(
            conn, alert_id, device_filter(principal_of(request), alerts.c.machine_id)
        )
        notes = alert_store.comments(conn, alert_id) if row is not None else []
    if row is None:
        raise APIError(404, "not_found", f"no alert with id {alert_id!r}", field="id")
    out = alert_json(row)
    out["comments"] = [
        {"comment": c.text, "createdBy": c.author, "createdTime": iso(c.created_at), "kind": c.kind} for c in notes
    ]
    return out


class AlertPatch(BaseModel):
    """Defender's update-alert body."""

    model_config = ConfigDict(extra="forbid")

    status: AlertStatus | None = None
    assignedTo: str | None = Field(default=None, max_length=128)
    classification: Classification | None = None
    determination: Determination | None = None
    comment: str | None = Field(default=None, max_length=10_000)


def change_alert(request: Request, alert_id: str, body: AlertPatch, who: Principal) -> dict[str, Any]:
    svc = services(request)
    change = alert_store.AlertChange(
        status=body.status, assigned_to=body.assignedTo, classification=body.classification,
        determination=body.determination, comment=body.comment,
    )
    get_alert_json(request, alert_id)  # 404 unless the alert is on a device the caller may see
    with svc.engine.begin() as conn:
        if not alert_store.update_alert(conn, alert_id, change, who.user.username, svc.clock.now()):
            raise APIError(404, "not_found", f"no alert with id {alert_id!r}", field="id")
    return get_alert_json(request, alert_id)


@router.patch("/alerts/{alert_id}")
def patch_alert(
    alert_id: str, body: AlertPatch, request: Request, who: Principal = requires(Permission.ALERTS_INVESTIGATION)
) -> dict[str, Any]:
    return change_alert(request, alert_id, body, who)
