"""Incidents: correlated alerts, with assignment, status, merge and split."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from vigil.core.alerts import Classification, Determination
from vigil.core.incidents import IncidentStatus
from vigil.core.rbac import Permission
from vigil.server.api._json import iso
from vigil.server.api.alerts import query_alerts
from vigil.server.auth import Principal, requires, services
from vigil.server.errors import APIError
from vigil.store import incidents as incident_store

router = APIRouter()


def incident_json(row: Any, alerts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out = {
        "incidentId": row.id,
        "incidentName": row.name,
        "status": row.status,
        "severity": row.severity,
        "assignedTo": row.assigned_to,
        "classification": row.classification,
        "determination": row.determination,
        "createdTime": iso(row.created_time),
        "lastUpdateTime": iso(row.last_update_time),
        "lastActivityTime": iso(row.last_activity),
        "machineIds": list(row.device_ids or []),
        "entities": [{"kind": k, "value": v} for k, v in row.entities or []],
        "redirectIncidentId": row.redirect_incident_id,
    }
    if alerts is not None:
        out["alerts"] = alerts
    return out


def get_incident_json(request: Request, incident_id: int) -> dict[str, Any]:
    svc = services(request)
    with svc.engine.connect() as conn:
        row = incident_store.get(conn, incident_id)
    if row is None:
        raise APIError(404, "not_found", f"no incident with id {incident_id}", field="id")
    return incident_json(row, query_alerts(request, incident_id=incident_id))


def list_incidents(request: Request, status: str | None = None) -> list[dict[str, Any]]:
    svc = services(request)
    with svc.engine.connect() as conn:
        rows = incident_store.listing(conn, status=status)
    return [incident_json(r) for r in rows]


@router.get("/incidents")
def incidents_api(
    request: Request, status: IncidentStatus | None = None, _: Principal = requires(Permission.VIEW_DATA_SECOPS)
) -> dict[str, Any]:
    return {"value": list_incidents(request, status.value if status else None)}


@router.get("/incidents/{incident_id}")
def incident_api(
    incident_id: int, request: Request, _: Principal = requires(Permission.VIEW_DATA_SECOPS)
) -> dict[str, Any]:
    return get_incident_json(request, incident_id)


class IncidentPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: IncidentStatus | None = None
    assignedTo: str | None = Field(default=None, max_length=128)
    classification: Classification | None = None
    determination: Determination | None = None


@router.patch("/incidents/{incident_id}")
def patch_incident(
    incident_id: int, body: IncidentPatch, request: Request,
    _: Principal = requires(Permission.ALERTS_INVESTIGATION),
) -> dict[str, Any]:
    if body.status is IncidentStatus.REDIRECTED:
        raise APIError(422, "invalid_request", "status: merge incidents to redirect one", field="status")
    values = {
        k: (v.value if hasattr(v, "value") else v)
        for k, v in (("status", body.status), ("assigned_to", body.assignedTo),
                     ("classification", body.classification), ("determination", body.determination))
        if v is not None
    }
    svc = services(request)
    with svc.engine.begin() as conn:
        if incident_store.get(conn, incident_id) is None:
            raise APIError(404, "not_found", f"no incident with id {incident_id}", field="id")
        incident_store.update(conn, incident_id, svc.clock.now(), **values)
    return get_incident_json(request, incident_id)


class MergeBody(BaseModel):
    incidentIds: list[int] = Field(min_length=1, max_length=100)


class SplitBody(BaseModel):
    alertIds: list[str] = Field(min_length=1, max_length=1000)


@router.post("/incidents/{incident_id}/merge")
def merge_incidents(
    incident_id: int, body: MergeBody, request: Request, _: Principal = requires(Permission.ALERTS_INVESTIGATION)
) -> dict[str, Any]:
    svc = services(request)
    try:
        with svc.engine.begin() as conn:
            incident_store.merge(conn, incident_id, body.incidentIds, svc.clock.now())
    except incident_store.IncidentError as e:
        raise APIError(422, "invalid_request", str(e), field="incidentIds") from None
    return get_incident_json(request, incident_id)


@router.post("/incidents/{incident_id}/split")
def split_incident(
    incident_id: int, body: SplitBody, request: Request, _: Principal = requires(Permission.ALERTS_INVESTIGATION)
) -> dict[str, Any]:
    svc = services(request)
    try:
        with svc.engine.begin() as conn:
            new_id = incident_store.split(conn, incident_id, body.alertIds, svc.clock.now())
    except incident_store.IncidentError as e:
        raise APIError(422, "invalid_request", str(e), field="alertIds") from None
    return get_incident_json(request, new_id)
