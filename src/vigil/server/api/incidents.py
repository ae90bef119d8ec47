"""Incidents: correlated alerts, with assignment, status, merge and split."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from vigil.core.alerts import Classification, Determination
from vigil.core.incidents import IncidentStatus, entities_of
from vigil.core.rbac import Permission
from vigil.server.api._json import iso
from vigil.server.api.alerts import query_alerts
from vigil.server.auth import Principal, requires, services
from vigil.server.errors import APIError
from vigil.server.scope import device_filter, principal_of, visible_device_ids
from vigil.store import incidents as incident_store
from vigil.store.schema import alerts

router = APIRouter()


def incident_json(
    row: Any, visible: frozenset[str] | None, alerts: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """``visible`` (device ids the caller may see, None for all) keeps other groups' devices out."""
    machine_ids = [d for d in row.device_ids or [] if visible is None or d in visible]
    if alerts is not None and visible is not None:
        # Entities come only from alerts the caller may see.
        entities = sorted((e.kind.value, e.value) for e in entities_of(ev for a in alerts for ev in a["evidence"]))
    else:
        entities = [tuple(e) for e in row.entities or []]
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
        "machineIds": machine_ids,
        "entities": [{"kind": k, "value": v} for k, v in entities],
        "redirectIncidentId": row.redirect_incident_id,
    }
    if alerts is not None:
        out["alerts"] = alerts
    return out


def _scope(request: Request) -> tuple[Any, frozenset[str] | None]:
    """The caller's alert filter, and the device ids they may see (None when they see all)."""
    who = principal_of(request)
    with services(request).engine.connect() as conn:
        ids = visible_device_ids(conn, who)
    return (None, None) if ids is None else (device_filter(who, alerts.c.machine_id), ids)


def _require(conn: sa.Connection, incident_id: int, scope: Any) -> Any:
    row = incident_store.get(conn, incident_id, scope)
    if row is None:
        raise APIError(404, "not_found", f"no incident with id {incident_id}", field="id")
    return row


def get_incident_json(request: Request, incident_id: int) -> dict[str, Any]:
    scope, visible = _scope(request)
    with services(request).engine.connect() as conn:
        row = _require(conn, incident_id, scope)
    return incident_json(row, visible, query_alerts(request, incident_id=incident_id))


def list_incidents(request: Request, status: str | None = None) -> list[dict[str, Any]]:
    scope, visible = _scope(request)
    with services(request).engine.connect() as conn:
        rows = incident_store.listing(conn, status=status, scope=scope)
    return [_listed(request, r, visible) for r in rows]


def _listed(request: Request, row: Any, visible: frozenset[str] | None) -> dict[str, Any]:
    if visible is None or set(row.device_ids or []) <= visible:
        return incident_json(row, visible)
    # The incident also spans devices the caller cannot see: its entities come from the visible alerts only.
    out = incident_json(row, visible, query_alerts(request, incident_id=row.id))
    del out["alerts"]
    return out


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
    scope, _visible = _scope(request)
    with svc.engine.begin() as conn:
        _require(conn, incident_id, scope)
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
    scope, _visible = _scope(request)
    try:
        with svc.engine.begin() as conn:
            for i in (incident_id, *body.incidentIds):
                _require(conn, i, scope)
            incident_store.merge(conn, incident_id, body.incidentIds, svc.clock.now())
    except incident_store.IncidentError as e:
        raise APIError(422, "invalid_request", str(e), field="incidentIds") from None
    return get_incident_json(request, incident_id)


@router.post("/incidents/{incident_id}/split")
def split_incident(
    incident_id: int, body: SplitBody, request: Request, _: Principal = requires(Permission.ALERTS_INVESTIGATION)
) -> dict[str, Any]:
    svc = services(request)
    scope, _visible = _scope(request)
    try:
        with svc.engine.begin() as conn:
            _require(conn, incident_id, scope)
            if scope is not None:
                seen = {r for r in conn.execute(sa.select(alerts.c.id).where(alerts.c.id.in_(body.alertIds), scope))
                        .scalars()}
                if len(seen) != len(set(body.alertIds)):
                    raise incident_store.IncidentError("an alert to split out is not in this incident")
            new_id = incident_store.split(conn, incident_id, body.alertIds, svc.clock.now())
    except incident_store.IncidentError as e:
        raise APIError(422, "invalid_request", str(e), field="alertIds") from None
    return get_incident_json(request, new_id)
