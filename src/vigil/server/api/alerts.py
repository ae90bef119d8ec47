"""Alerts: Defender's alert entity, the queue and single alerts, over the alerts service."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from vigil.app import alerts as app_alerts
from vigil.app.ports import AlertRecord, AlertUpdate
from vigil.core.alerts import AlertStatus, Classification, Determination
from vigil.core.rbac import Permission
from vigil.core.severity import Severity
from vigil.server import app_edge as edge
from vigil.server.api import _odata as odata
from vigil.server.api._json import ByName, iso
from vigil.server.auth import Principal, requires, services

router = APIRouter()


class RelatedUser(ByName, BaseModel):
    userName: str
    domainName: str | None = None


class AlertInfo(ByName, BaseModel):
    """Defender's alert entity, as far as Vigil fills it."""

    id: str
    incidentId: int | None
    # None for an identity alert (about a Vigil account: relatedUser), seen only by callers who see every group.
    machineId: str | None
    relatedUser: RelatedUser | None = None
    title: str
    description: str
    severity: str
    category: str
    status: str
    classification: str | None
    determination: str | None
    investigationState: str
    detectionSource: str
    detectorId: str
    mitreTechniques: list[str]
    assignedTo: str | None
    alertCreationTime: str | None
    firstEventTime: str | None
    lastEventTime: str | None
    lastUpdateTime: str | None
    resolvedTime: str | None
    eventCount: int
    # The matched events' columns (docs/telemetry-schema.md), one mapping per event, at most MAX_EVIDENCE.
    evidence: list[dict[str, Any]]


class AlertComment(ByName, BaseModel):
    comment: str
    createdBy: str
    createdTime: str | None
    # "Comment" for an analyst's, "History" for the automatic record of a change.
    kind: str


class AlertDetail(AlertInfo):
    comments: list[AlertComment]


class AlertList(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    odata_context: str = Field(default="/api/$metadata#Alerts", alias="@odata.context")
    value: list[AlertInfo]


def alert_info(a: AlertRecord) -> AlertInfo:
    return AlertInfo(
        id=a.id, incidentId=a.incident_id, machineId=a.machine_id, title=a.title, description=a.description,
        severity=a.severity, category=a.category, status=a.status, classification=a.classification,
        determination=a.determination, investigationState=a.investigation_state,
        detectionSource=a.detection_source, detectorId=a.rule_id, mitreTechniques=list(a.mitre_techniques),
        assignedTo=a.assigned_to, alertCreationTime=iso(a.alert_creation_time),
        firstEventTime=iso(a.first_event_time), lastEventTime=iso(a.last_event_time),
        lastUpdateTime=iso(a.last_update_time), resolvedTime=iso(a.resolved_time), eventCount=a.event_count,
        evidence=[dict(e) for e in a.evidence],
        relatedUser=RelatedUser(userName=a.account_name) if a.account_name else None,
    )


def alert_detail(a: app_alerts.Alert) -> AlertDetail:
    return AlertDetail(**alert_info(a.record).model_dump(), comments=[
        AlertComment(comment=n.text, createdBy=n.author, createdTime=iso(n.created_at), kind=n.kind) for n in a.notes
    ])


def alerts_of(
    request: Request, machine_id: str | None = None, status: str | None = None, severity: str | None = None,
    limit: int = 1000, incident_id: int | None = None,
) -> list[AlertInfo]:
    with edge.translated():
        found = app_alerts.list_alerts(
            edge.store(request), services(request).clock, edge.principal(request), machine_id=machine_id,
            status=status, severity=severity, incident_id=incident_id, limit=limit,
        )
    return [alert_info(a) for a in found]


def query_alerts(
    request: Request, machine_id: str | None = None, status: str | None = None, severity: str | None = None,
    limit: int = 1000, incident_id: int | None = None,
) -> list[AlertInfo]:
    """The caller's alerts (the portal's queue, device page and dashboard); ``alerts_of`` by its old name."""
    return alerts_of(request, machine_id, status, severity, limit, incident_id)


def alert_by_id(request: Request, alert_id: str) -> AlertDetail:
    with edge.translated():
        a = app_alerts.get_alert(edge.store(request), services(request).clock, edge.principal(request), alert_id)
    return alert_detail(a)


def get_alert_json(request: Request, alert_id: str) -> AlertDetail:
    """One alert with its comments (the portal's alert page); ``alert_by_id`` by its old name."""
    return alert_by_id(request, alert_id)


@router.get("/alerts", response_model=AlertList)
def alerts_api(
    request: Request,
    status: AlertStatus | None = None,
    severity: Severity | None = None,
    machineId: str | None = None,
    q: odata.ODataQuery = odata.options(),
    _: Principal = requires(Permission.VIEW_DATA_SECOPS),
) -> Any:
    limit = odata.MAX_TOP if q.filtered else (q.top or 1000)
    found = alerts_of(request, machineId, status.value if status else None, severity.value if severity else None, limit)
    return odata.respond(q, found, AlertInfo, "/api/$metadata#Alerts")


@router.get("/alerts/{alert_id}", response_model=AlertDetail)
def alert_api(alert_id: str, request: Request, _: Principal = requires(Permission.VIEW_DATA_SECOPS)) -> AlertDetail:
    return alert_by_id(request, alert_id)


class AlertPatch(BaseModel):
    """Defender's update-alert body."""

    model_config = ConfigDict(extra="forbid")

    status: AlertStatus | None = None
    assignedTo: str | None = Field(default=None, max_length=128)
    classification: Classification | None = None
    determination: Determination | None = None
    comment: str | None = Field(default=None, max_length=10_000)


def _update(request: Request, alert_id: str, body: AlertPatch) -> AlertDetail:
    change = AlertUpdate(
        status=body.status.value if body.status else None, assigned_to=body.assignedTo,
        classification=body.classification.value if body.classification else None,
        determination=body.determination.value if body.determination else None, comment=body.comment,
    )
    with edge.translated():
        a = app_alerts.update_alert(
            edge.store(request), services(request).clock, edge.principal(request), alert_id, change
        )
    return alert_detail(a)


def change_alert(request: Request, alert_id: str, body: AlertPatch, who: Principal) -> AlertDetail:
    """The portal's update form goes through here; ``who`` is the guarded caller (read again by the service)."""
    return _update(request, alert_id, body)


@router.patch("/alerts/{alert_id}", response_model=AlertDetail)
def patch_alert(
    alert_id: str, body: AlertPatch, request: Request, _: Principal = requires(Permission.ALERTS_INVESTIGATION)
) -> AlertDetail:
    return _update(request, alert_id, body)
