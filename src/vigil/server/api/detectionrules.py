"""Custom detection rules with Microsoft Graph's paths and fields (``security/rules/detectionRules``):
list, create, get, update (PATCH), delete, and Vigil's own ``/run`` (run now) and ``/runs`` (the run history)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from vigil.app import detections as app_detections
from vigil.app.detections import Detection
from vigil.app.stores import detection_repository, hunt_runner
from vigil.core.rbac import Permission
from vigil.hunt.detections import DetectionError, RuleFields, check_fields
from vigil.server import app_edge as edge
from vigil.server.api._json import iso
from vigil.server.auth import Principal, requires, services
from vigil.server.errors import APIError

router = APIRouter()
PATH = "/security/rules/detectionRules"


class QueryCondition(BaseModel):
    model_config = ConfigDict(extra="forbid")
    queryText: str = Field(min_length=1, max_length=30_000)


class Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    period: str = Field(max_length=16)


class AlertTemplate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(max_length=512)
    description: str = Field(default="", max_length=10_000)
    severity: str = Field(max_length=16)
    category: str = Field(default="Suspicious activity", max_length=64)
    mitreTechniques: list[str] = Field(default_factory=list, max_length=50)


class DetectionAction(BaseModel):
    model_config = ConfigDict(extra="forbid")
    alertTemplate: AlertTemplate
    # Vigil's short names (isolateDevice) or Graph's objects ({"@odata.type": "#microsoft.graph.security.
    # isolateDeviceResponseAction", ...}); they are answered as the short names.
    responseActions: list[str | dict[str, Any]] = Field(default_factory=list, max_length=10)


class RuleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    displayName: str = Field(max_length=256)
    isEnabled: bool = True
    queryCondition: QueryCondition
    schedule: Schedule
    detectionAction: DetectionAction


class RulePatch(BaseModel):
    """Graph's PATCH: any of the fields; the others stay."""

    model_config = ConfigDict(extra="forbid")
    displayName: str | None = Field(default=None, max_length=256)
    isEnabled: bool | None = None
    queryCondition: QueryCondition | None = None
    schedule: Schedule | None = None
    detectionAction: DetectionAction | None = None


class LastRunDetails(BaseModel):
    lastRunDateTime: str | None
    status: str | None
    failureReason: str | None


class RuleInfo(BaseModel):
    id: str
    displayName: str
    isEnabled: bool
    queryCondition: QueryCondition
    schedule: Schedule
    detectionAction: DetectionAction
    detectorId: str
    createdBy: str
    createdDateTime: str | None
    lastModifiedBy: str
    lastModifiedDateTime: str | None
    lastRunDetails: LastRunDetails


class RuleList(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    odata_context: str = Field(default="/api/$metadata#detectionRules", alias="@odata.context")
    value: list[RuleInfo]


class ActionInfo(BaseModel):
    action: str
    deviceId: str
    alertId: str
    id: str | None  # the machine action's id (the investigation's for initiateInvestigation)
    error: str | None


class RunInfo(BaseModel):
    status: str
    rows: int
    newHits: int
    durationMs: float
    error: str | None
    disabled: bool
    actions: list[ActionInfo] = []


def rule_info(d: Detection) -> RuleInfo:
    f = d.fields
    return RuleInfo(
        id=str(d.id), displayName=f.display_name, isEnabled=f.enabled,
        queryCondition=QueryCondition(queryText=f.query_text), schedule=Schedule(period=f.period),
        detectionAction=DetectionAction(alertTemplate=AlertTemplate(
            title=f.title, description=f.description, severity=f.severity, category=f.category,
            mitreTechniques=list(f.techniques)), responseActions=list(f.response_actions)),
        detectorId=d.rule_id, createdBy=d.created_by, createdDateTime=iso(d.created_at),
        lastModifiedBy=d.last_modified_by, lastModifiedDateTime=iso(d.last_modified_at),
        lastRunDetails=LastRunDetails(lastRunDateTime=iso(d.last_run_at) if d.last_run_at else None,
                                      status=d.last_run_status, failureReason=d.last_failure_reason),
    )


def _action_names(actions: list[str | dict[str, Any]]) -> list[str]:
    out = []
    for i, a in enumerate(actions):
        name = a.get("@odata.type") if isinstance(a, dict) else a
        if not isinstance(name, str):
            raise APIError(422, "invalid_request", "a response action is a name or an object with @odata.type",
                           field=f"detectionAction.responseActions[{i}]")
        out.append(name)
    return out


def _fields(body: RuleBody) -> RuleFields:
    t = body.detectionAction.alertTemplate
    try:
        return check_fields(body.displayName, body.queryCondition.queryText, body.schedule.period, body.isEnabled,
                            t.title, t.description, t.severity, t.category, t.mitreTechniques,
                            _action_names(body.detectionAction.responseActions))
    except DetectionError as e:
        raise APIError(422, "invalid_request", e.problem, field=e.field) from None


def _id(rule_id: str) -> int:
    if not rule_id.isdigit():
        raise APIError(404, "not_found", f"no custom detection rule with id {rule_id!r}", field="id")
    return int(rule_id)


@router.get(PATH, response_model=RuleList)
def list_rules(request: Request, _: Principal = requires(Permission.VIEW_DATA_SECOPS)) -> RuleList:
    store = edge.store(request)
    with edge.translated():
        found = app_detections.list_detections(detection_repository(store), edge.principal(request))
    return RuleList(value=[rule_info(d) for d in found])


@router.post(PATH, response_model=RuleInfo, status_code=201)
def create_rule(body: RuleBody, request: Request,
                _: Principal = requires(Permission.MANAGE_SECURITY_SETTINGS)) -> RuleInfo:
    store = edge.store(request)
    with edge.translated():
        d = app_detections.create_detection(store, detection_repository(store), hunt_runner(store),
                                            services(request).clock, edge.principal(request), _fields(body))
    return rule_info(d)


@router.get(PATH + "/{rule_id}", response_model=RuleInfo)
def get_rule(rule_id: str, request: Request, _: Principal = requires(Permission.VIEW_DATA_SECOPS)) -> RuleInfo:
    store = edge.store(request)
    with edge.translated():
        return rule_info(app_detections.get_detection(detection_repository(store), edge.principal(request),
                                                      _id(rule_id)))


@router.patch(PATH + "/{rule_id}", response_model=RuleInfo)
def update_rule(rule_id: str, body: RulePatch, request: Request,
                _: Principal = requires(Permission.MANAGE_SECURITY_SETTINGS)) -> RuleInfo:
    store = edge.store(request)
    repo, who = detection_repository(store), edge.principal(request)
    with edge.translated():
        old = rule_info(app_detections.detection_to_change(repo, who, _id(rule_id)))
        merged = RuleBody(**{**old.model_dump(include=set(RuleBody.model_fields)),
                             **body.model_dump(exclude_unset=True)})
        d = app_detections.update_detection(store, repo, hunt_runner(store), services(request).clock, who,
                                            _id(rule_id), _fields(merged))
    return rule_info(d)


@router.delete(PATH + "/{rule_id}", status_code=204)
def delete_rule(rule_id: str, request: Request,
                _: Principal = requires(Permission.MANAGE_SECURITY_SETTINGS)) -> Response:
    store = edge.store(request)
    with edge.translated():
        app_detections.delete_detection(store, detection_repository(store), services(request).clock,
                                        edge.principal(request), _id(rule_id))
    return Response(status_code=204)


@router.post(PATH + "/{rule_id}/run", response_model=RunInfo)
def run_rule(rule_id: str, request: Request,
             _: Principal = requires(Permission.MANAGE_SECURITY_SETTINGS)) -> RunInfo:
    """Run the rule now (outside its schedule); the run is recorded like a scheduled one."""
    store = edge.store(request)
    with edge.translated():
        run = app_detections.run_now(detection_repository(store), hunt_runner(store), services(request).clock,
                                     edge.principal(request), _id(rule_id), store)
    return RunInfo(status=run.status, rows=run.rows, newHits=run.new_hits, durationMs=run.duration_ms,
                   error=run.error, disabled=run.disabled,
                   actions=[ActionInfo(**a.as_json()) for a in run.actions])


@router.get(PATH + "/{rule_id}/runs")
def rule_runs(rule_id: str, request: Request,
              _: Principal = requires(Permission.VIEW_DATA_SECOPS)) -> dict[str, Any]:
    store = edge.store(request)
    repo = detection_repository(store)
    with edge.translated():
        app_detections.get_detection(repo, edge.principal(request), _id(rule_id))
    return {"value": repo.runs(_id(rule_id))}
