"""Incidents: correlated alerts, with assignment, status, merge and split, over the incidents service."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from vigil.app import incidents as app_incidents
from vigil.app.ports import IncidentUpdate
from vigil.core.alerts import Classification, Determination
from vigil.core.incidents import IncidentStatus
from vigil.core.rbac import Permission
from vigil.server import app_edge as edge
from vigil.server.api import _odata as odata
from vigil.server.api._json import ByName, iso
from vigil.server.api.alerts import AlertInfo, alert_info
from vigil.server.auth import Principal, requires, services

router = APIRouter()


class IncidentEntity(ByName, BaseModel):
    kind: str
    value: str


class IncidentInfo(ByName, BaseModel):
    """Defender's incident entity; devices and entities are those the caller may see."""

    incidentId: int
    incidentName: str
    status: str
    severity: str
    assignedTo: str | None
    classification: str | None
    determination: str | None
    createdTime: str | None
    lastUpdateTime: str | None
    lastActivityTime: str | None
    machineIds: list[str]
    entities: list[IncidentEntity]
    redirectIncidentId: int | None


class IncidentDetail(IncidentInfo):
    alerts: list[AlertInfo]


class IncidentList(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    odata_context: str = Field(default="/api/$metadata#Incidents", alias="@odata.context")
    value: list[IncidentInfo]


def incident_info(i: app_incidents.Incident) -> IncidentInfo:
    r = i.record
    return IncidentInfo(
        incidentId=r.id, incidentName=r.name, status=r.status, severity=r.severity, assignedTo=r.assigned_to,
        classification=r.classification, determination=r.determination, createdTime=iso(r.created_time),
        lastUpdateTime=iso(r.last_update_time), lastActivityTime=iso(r.last_activity),
        machineIds=list(i.machine_ids), entities=[IncidentEntity(kind=k, value=v) for k, v in i.entities],
        redirectIncidentId=r.redirect_incident_id,
    )


def incident_detail(i: app_incidents.Incident) -> IncidentDetail:
    return IncidentDetail(**incident_info(i).model_dump(), alerts=[alert_info(a) for a in i.alerts or ()])


def _call(request: Request) -> tuple[Any, Any, Any]:
    return edge.store(request), services(request).clock, edge.principal(request)


def get_incident_json(request: Request, incident_id: int) -> IncidentDetail:
    """One incident with its alerts (the portal's incident page)."""
    with edge.translated():
        return incident_detail(app_incidents.get_incident(*_call(request), incident_id))


def list_incidents(request: Request, status: str | None = None) -> list[IncidentInfo]:
    """The caller's incidents (the portal's list, device page and dashboard)."""
    with edge.translated():
        return [incident_info(i) for i in app_incidents.list_incidents(*_call(request), status)]


@router.get("/incidents", response_model=IncidentList)
def incidents_api(
    request: Request, status: IncidentStatus | None = None, q: odata.ODataQuery = odata.options(),
    _: Principal = requires(Permission.VIEW_DATA_SECOPS),
) -> Any:
    with edge.translated():
        found = app_incidents.list_incidents(*_call(request), status.value if status else None)
    return odata.respond(q, [incident_info(i) for i in found], IncidentInfo, "/api/$metadata#Incidents")


@router.get("/incidents/{incident_id}", response_model=IncidentDetail)
def incident_api(
    incident_id: int, request: Request, _: Principal = requires(Permission.VIEW_DATA_SECOPS)
) -> IncidentDetail:
    with edge.translated():
        return incident_detail(app_incidents.get_incident(*_call(request), incident_id))


class IncidentPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: IncidentStatus | None = None
    assignedTo: str | None = Field(default=None, max_length=128)
    classification: Classification | None = None
    determination: Determination | None = None


@router.patch("/incidents/{incident_id}", response_model=IncidentDetail)
def patch_incident(
    incident_id: int, body: IncidentPatch, request: Request,
    _: Principal = requires(Permission.ALERTS_INVESTIGATION),
) -> IncidentDetail:
    change = IncidentUpdate(
        status=body.status.value if body.status else None, assigned_to=body.assignedTo,
        classification=body.classification.value if body.classification else None,
        determination=body.determination.value if body.determination else None,
    )
    with edge.translated():
        return incident_detail(app_incidents.update_incident(*_call(request), incident_id, change))


class MergeBody(BaseModel):
    incidentIds: list[int] = Field(min_length=1, max_length=100)


class SplitBody(BaseModel):
    alertIds: list[str] = Field(min_length=1, max_length=1000)


@router.post("/incidents/{incident_id}/merge", response_model=IncidentDetail)
def merge_incidents(
    incident_id: int, body: MergeBody, request: Request, _: Principal = requires(Permission.ALERTS_INVESTIGATION)
) -> IncidentDetail:
    with edge.translated():
        return incident_detail(app_incidents.merge_incidents(*_call(request), incident_id, body.incidentIds))


@router.post("/incidents/{incident_id}/split", response_model=IncidentDetail)
def split_incident(
    incident_id: int, body: SplitBody, request: Request, _: Principal = requires(Permission.ALERTS_INVESTIGATION)
) -> IncidentDetail:
    with edge.translated():
        return incident_detail(app_incidents.split_incident(*_call(request), incident_id, body.alertIds))
