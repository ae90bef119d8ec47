"""Automated investigations: Defender's investigation entity and routes, over the AIR service.

Pending remediations are machine actions held for approval: approve or reject them where every action is decided,
``POST /api/machineactions/approve|reject`` (the action center's permission, four-eyes rule and audit).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from vigil.app import air as app_air
from vigil.app.air_ports import InvestigationRecord, RemediationRecord
from vigil.app.errors import InvalidInput, NotFound
from vigil.core.rbac import Permission
from vigil.server import app_edge as edge
from vigil.server.api import _odata as odata
from vigil.server.api._json import iso
from vigil.server.auth import Principal, requires, services

router = APIRouter()


class InvestigationInfo(BaseModel):
    """Defender's investigation entity, with Vigil's automation level, trigger and parent."""

    id: str
    startTime: str | None
    endTime: str | None
    state: str
    cancelledBy: str | None
    statusDetails: str
    machineId: str
    computerDnsName: str
    triggeringAlertId: str | None
    incidentId: int | None
    parentInvestigationId: str | None
    triggeredBy: str
    requestedBy: str
    automationLevel: str


class Remediation(BaseModel):
    id: int
    kind: str
    entityKey: str
    machineId: str
    targetPath: str
    parameters: dict[str, Any]
    # Run, PendingApproval, NotRun (No automated response) or Unsupported (the agent has no such action yet).
    decision: str
    why: str
    machineActionId: str | None
    actionStatus: str | None
    approval: str | None
    # Where it stands: NotRun, Unsupported, PendingApproval, Running, Succeeded, Failed, Rejected, Undone.
    outcome: str


class InvestigationDetail(InvestigationInfo):
    entities: list[dict[str, Any]]
    verdicts: list[dict[str, Any]]
    remediations: list[Remediation]
    log: list[dict[str, Any]]
    expansion: dict[str, Any]


class InvestigationList(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    odata_context: str = Field(default="/api/$metadata#Investigations", alias="@odata.context")
    value: list[InvestigationInfo]


class StartBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    Comment: str | None = Field(default=None, max_length=4000)


class ApiStartBody(StartBody):
    machineId: str | None = Field(default=None, max_length=64)
    alertId: str | None = Field(default=None, max_length=64)
    incidentId: int | None = None


def info(r: InvestigationRecord) -> InvestigationInfo:
    return InvestigationInfo(
        id=str(r.id), startTime=iso(r.start_time), endTime=iso(r.end_time), state=r.state,
        cancelledBy=r.cancelled_by, statusDetails=r.status_details, machineId=r.machine_id,
        computerDnsName=r.computer_dns_name, triggeringAlertId=r.triggering_alert_id, incidentId=r.incident_id,
        parentInvestigationId=str(r.parent_id) if r.parent_id else None, triggeredBy=r.triggered_by,
        requestedBy=r.requested_by, automationLevel=r.automation_level,
    )


def remediation(r: RemediationRecord) -> Remediation:
    return Remediation(
        id=r.id, kind=r.kind, entityKey=r.entity_key, machineId=r.machine_id, targetPath=r.target_path,
        parameters=r.parameters, decision=r.decision, why=r.why, machineActionId=r.action_id,
        actionStatus=r.action_status, approval=r.action_approval, outcome=app_air.outcome(r),
    )


def detail(inv: app_air.Investigation) -> InvestigationDetail:
    r = inv.record
    return InvestigationDetail(
        **info(r).model_dump(), entities=list(r.entities), verdicts=list(r.verdicts),
        remediations=[remediation(x) for x in inv.remediations], log=list(r.log), expansion=r.expansion,
    )


def _id(investigation_id: str) -> int:
    if not investigation_id.isdigit():
        raise edge.http_error(NotFound(f"no investigation with id {investigation_id!r}", field="id"))
    return int(investigation_id)


def investigation_detail(request: Request, investigation_id: str) -> dict[str, Any]:
    """One investigation as a plain mapping (the portal's investigation page)."""
    with edge.translated():
        inv = app_air.get(edge.store(request), services(request).clock, edge.principal(request), _id(investigation_id))
    return detail(inv).model_dump()


def investigations_of(request: Request, state: str | None = None, machine_id: str | None = None,
                      limit: int = 1000) -> list[dict[str, Any]]:
    with edge.translated():
        found = app_air.listing(edge.store(request), services(request).clock, edge.principal(request),
                                state=state, machine_id=machine_id, limit=limit)
    return [info(r).model_dump() for r in found]


@router.get("/investigations", response_model=InvestigationList)
def list_investigations(
    request: Request, state: str | None = None, machineId: str | None = None, alertId: str | None = None,
    q: odata.ODataQuery = odata.options(),
    _: Principal = requires(Permission.VIEW_DATA_SECOPS),
) -> Any:
    """The caller's investigations, newest first, with OData's $filter, $orderby, $skip, $top and $select."""
    # $filter, $orderby and $skip apply to the whole list, so only a bare $top may limit what is read.
    limit = odata.MAX_TOP if q.filtered else (q.top or 1000)
    with edge.translated():
        found = app_air.listing(edge.store(request), services(request).clock, edge.principal(request),
                                state=state, machine_id=machineId, alert_id=alertId, limit=limit)
    return odata.respond(q, [info(r) for r in found], InvestigationInfo, "/api/$metadata#Investigations")


@router.get("/investigations/{investigation_id}", response_model=InvestigationDetail)
def get_investigation(investigation_id: str, request: Request,
                      _: Principal = requires(Permission.VIEW_DATA_SECOPS)) -> InvestigationDetail:
    with edge.translated():
        inv = app_air.get(edge.store(request), services(request).clock, edge.principal(request), _id(investigation_id))
    return detail(inv)


@router.post("/machines/{machine_id}/startInvestigation", status_code=201, response_model=InvestigationDetail)
def start_on_machine(machine_id: str, body: StartBody, request: Request,
                     _: Principal = requires(Permission.ALERTS_INVESTIGATION)) -> InvestigationDetail:
    """Defender's "Start automated investigation" on a device, over the last day of its telemetry."""
    with edge.translated():
        inv = app_air.start(edge.store(request), services(request).clock, edge.principal(request), machine_id,
                            triggered_by="Device", comment=body.Comment)
    return detail(inv)


@router.post("/alerts/{alert_id}/startInvestigation", status_code=201, response_model=InvestigationDetail)
def start_on_alert(alert_id: str, body: StartBody, request: Request,
                   _: Principal = requires(Permission.ALERTS_INVESTIGATION)) -> InvestigationDetail:
    with edge.translated():
        inv = app_air.start_for_alert(edge.store(request), services(request).clock, edge.principal(request),
                                      alert_id)
    return detail(inv)


@router.post("/incidents/{incident_id}/startInvestigation", status_code=201, response_model=InvestigationList)
def start_on_incident(incident_id: int, body: StartBody, request: Request,
                      _: Principal = requires(Permission.ALERTS_INVESTIGATION)) -> InvestigationList:
    """One investigation per alert of the incident not investigated yet."""
    with edge.translated():
        found = app_air.start_for_incident(edge.store(request), services(request).clock, edge.principal(request),
                                           incident_id)
    return InvestigationList(value=[info(i.record) for i in found])


@router.post("/investigations", status_code=201, response_model=InvestigationDetail)
def start_by_api(body: ApiStartBody, request: Request,
                 _: Principal = requires(Permission.ALERTS_INVESTIGATION)) -> InvestigationDetail:
    """Start one from a script: an alert's (``alertId``) or a device's (``machineId``)."""
    store, clock, who = edge.store(request), services(request).clock, edge.principal(request)
    with edge.translated():
        if body.alertId:
            inv = app_air.start_for_alert(store, clock, who, body.alertId)
        elif body.machineId:
            inv = app_air.start(store, clock, who, body.machineId, triggered_by="Api", comment=body.Comment)
        else:
            raise InvalidInput("give alertId or machineId", field="machineId")
    return detail(inv)


@router.post("/investigations/{investigation_id}/cancel", response_model=InvestigationDetail)
def cancel_investigation(investigation_id: str, body: StartBody, request: Request,
                         _: Principal = requires(Permission.ALERTS_INVESTIGATION)) -> InvestigationDetail:
    with edge.translated():
        inv = app_air.cancel(edge.store(request), services(request).clock, edge.principal(request),
                             _id(investigation_id), body.Comment)
    return detail(inv)


@router.post("/investigations/{investigation_id}/approveExpansion", response_model=InvestigationDetail)
def approve_expansion(investigation_id: str, body: StartBody, request: Request,
                      _: Principal = requires(Permission.REMEDIATION_SECOPS)) -> InvestigationDetail:
    """Let the investigation reach the 10 or more devices where its entities are seen (Defender asks too)."""
    with edge.translated():
        inv = app_air.approve_expansion(edge.store(request), services(request).clock, edge.principal(request),
                                        _id(investigation_id), body.Comment)
    return detail(inv)
