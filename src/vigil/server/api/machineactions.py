"""Machine actions: Defender's response-action routes, the action center's queries, approvals and export."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from vigil.app import actions as app_actions
from vigil.core.actions import (
    ActionRuleError,
    ActionStatus,
    ActionType,
    MachineAction,
    SelfApproval,
    validate_parameters,
)
from vigil.core.rbac import Permission
from vigil.core.telemetry import parse_timestamp
from vigil.deploy.signing import SigningKeyMissing
from vigil.server import actions as action_service
from vigil.server import app_edge as edge
from vigil.server.api import _odata as odata
from vigil.server.api._json import iso
from vigil.server.api.machines import get_machine, list_machines
from vigil.server.auth import Principal, requires, services
from vigil.server.errors import APIError
from vigil.server.scope import change, device_filter, principal_of
from vigil.store import actions as action_store
from vigil.store.schema import machine_actions

router = APIRouter()
REMEDIATE = Permission.REMEDIATION_SECOPS
# Defender puts collecting a package and scanning under "Alerts investigation", not remediation.
INVESTIGATE = Permission.ALERTS_INVESTIGATION


class RelatedFile(BaseModel):
    fileIdentifier: str
    fileIdentifierType: str


class MachineActionInfo(BaseModel):
    """Defender's machine action entity, with Vigil's approval, result and package fields."""

    id: str
    type: str
    scope: str | None
    requestor: str
    requestorComment: str
    status: str
    machineId: str
    computerDnsName: str | None
    creationDateTimeUtc: str | None
    lastUpdateDateTimeUtc: str | None
    expirationDateTimeUtc: str | None
    relatedFileInfo: RelatedFile | None
    parameters: dict[str, Any]
    approval: str
    decidedBy: str | None
    decisionComment: str | None
    resultMessage: str
    refused: str | None
    output: dict[str, Any] | None
    packageAvailable: bool
    packageSha256: str | None
    packageSize: int | None
    undoOf: str | None
    undoable: bool
    sessionId: int | None


def action_json(a: MachineAction, names: dict[str, str] | None = None) -> dict[str, Any]:
    scope = a.parameters.get("IsolationType") or a.parameters.get("ScanType")
    return {
        "id": a.id,
        "type": a.type.value,
        "scope": scope,
        "requestor": a.requestor,
        "requestorComment": a.comment,
        "status": a.status.value,
        "machineId": a.device_id,
        "computerDnsName": (names or {}).get(a.device_id),
        "creationDateTimeUtc": iso(a.created_at),
        "lastUpdateDateTimeUtc": iso(a.updated_at),
        "expirationDateTimeUtc": iso(a.expires_at),
        "relatedFileInfo": ({"fileIdentifier": a.related_file_sha256, "fileIdentifierType": "Sha256"}
                            if a.related_file_sha256 else None),
        "parameters": a.parameters,
        "approval": a.approval.value,
        "decidedBy": a.decided_by,
        "decisionComment": a.decision_comment,
        "resultMessage": a.result_message,
        "refused": a.refused,
        "output": a.result_output,
        "packageAvailable": a.artifact_sha256 is not None,
        "packageSha256": a.artifact_sha256,
        "packageSize": a.artifact_size,
        "undoOf": a.undo_of,
        "undoable": a.undoable,
        "sessionId": a.session_id,
    }


def _rule_error(e: ActionRuleError) -> APIError:
    return APIError(422, "invalid_request", str(e), field=e.field)


def start_action(
    request: Request, machine_id: str, action_type: ActionType, params: dict[str, Any], comment: str | None,
    require_approval: bool = False, session_id: int | None = None, validated: bool = False,
) -> MachineAction:
    """Shared by every route (API and portal): visibility, validation, signing, audit."""
    get_machine(request, machine_id)  # 404 unless the caller may see the device
    svc = services(request)
    now = svc.clock.now()
    try:
        clean = params if validated else validate_parameters(action_type, params)
        with svc.engine.begin() as conn:
            return action_service.create(
                conn, svc.settings, change(request, "", "", ""), device_id=machine_id, action_type=action_type,
                parameters=clean, comment=comment, now=now, require_approval=require_approval,
                session_id=session_id,
            )
    except ActionRuleError as e:
        raise _rule_error(e) from None
    except SigningKeyMissing as e:
        raise APIError(503, "not_configured", str(e)) from None


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    Comment: str = Field(max_length=4000)
    # A Vigil extension: hold the action in the action center until a second analyst approves it.
    RequireApproval: bool = False


class IsolateBody(_Body):
    IsolationType: str = "Full"
    AllowList: list[str] = Field(default_factory=list, max_length=64)


class RestrictBody(_Body):
    Paths: list[str] | None = None
    AllowPrefixes: list[str] | None = None


class ScanBody(_Body):
    ScanType: str = "Quick"


class QuarantineBody(_Body):
    Sha256: str | None = None
    Path: str | None = None


class RestoreBody(_Body):
    QuarantineId: str


class KillBody(_Body):
    ProcessId: int
    ProcessCreationTime: str


def _start(request: Request, machine_id: str, kind: ActionType, body: _Body) -> MachineActionInfo:
    """Every response-action route: the actions service checks, validates, signs and audits."""
    params = body.model_dump(exclude={"Comment", "RequireApproval"}, exclude_none=True)
    with edge.translated():
        a = app_actions.start(edge.store(request), services(request).clock, edge.principal(request), machine_id,
                              kind, params, body.Comment, body.RequireApproval)
    return MachineActionInfo.model_validate(action_json(a))


@router.post("/machines/{machine_id}/isolate", status_code=201, response_model=MachineActionInfo)
def isolate(machine_id: str, body: IsolateBody, request: Request, _: Principal = requires(REMEDIATE)
            ) -> MachineActionInfo:
    return _start(request, machine_id, ActionType.ISOLATE, body)


@router.post("/machines/{machine_id}/unisolate", status_code=201, response_model=MachineActionInfo)
def unisolate(machine_id: str, body: _Body, request: Request, _: Principal = requires(REMEDIATE)) -> MachineActionInfo:
    return _start(request, machine_id, ActionType.UNISOLATE, body)


@router.post("/machines/{machine_id}/collectInvestigationPackage", status_code=201, response_model=MachineActionInfo)
def collect_package(machine_id: str, body: _Body, request: Request, _: Principal = requires(INVESTIGATE)
                    ) -> MachineActionInfo:
    return _start(request, machine_id, ActionType.COLLECT_INVESTIGATION_PACKAGE, body)


@router.post("/machines/{machine_id}/restrictCodeExecution", status_code=201, response_model=MachineActionInfo)
def restrict(machine_id: str, body: RestrictBody, request: Request, _: Principal = requires(REMEDIATE)
             ) -> MachineActionInfo:
    return _start(request, machine_id, ActionType.RESTRICT_CODE_EXECUTION, body)


@router.post("/machines/{machine_id}/unrestrictCodeExecution", status_code=201, response_model=MachineActionInfo)
def unrestrict(machine_id: str, body: _Body, request: Request, _: Principal = requires(REMEDIATE)
               ) -> MachineActionInfo:
    return _start(request, machine_id, ActionType.UNRESTRICT_CODE_EXECUTION, body)


@router.post("/machines/{machine_id}/runAntiVirusScan", status_code=201, response_model=MachineActionInfo)
def av_scan(machine_id: str, body: ScanBody, request: Request, _: Principal = requires(INVESTIGATE)
            ) -> MachineActionInfo:
    return _start(request, machine_id, ActionType.RUN_ANTIVIRUS_SCAN, body)


@router.post("/machines/{machine_id}/StopAndQuarantineFile", status_code=201, response_model=MachineActionInfo)
def stop_and_quarantine(machine_id: str, body: QuarantineBody, request: Request, _: Principal = requires(REMEDIATE)
                        ) -> MachineActionInfo:
    return _start(request, machine_id, ActionType.STOP_AND_QUARANTINE_FILE, body)


@router.post("/machines/{machine_id}/restoreQuarantinedFile", status_code=201, response_model=MachineActionInfo)
def restore_file(machine_id: str, body: RestoreBody, request: Request, _: Principal = requires(REMEDIATE)
                 ) -> MachineActionInfo:
    return _start(request, machine_id, ActionType.RESTORE_QUARANTINED_FILE, body)


@router.post("/machines/{machine_id}/killProcess", status_code=201, response_model=MachineActionInfo)
def kill_process(machine_id: str, body: KillBody, request: Request, _: Principal = requires(REMEDIATE)
                 ) -> MachineActionInfo:
    return _start(request, machine_id, ActionType.KILL_PROCESS, body)


# -- the action center -------------------------------------------------------------------------------

def _time(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        raise APIError(422, "invalid_request", f"{name}: not an ISO 8601 time: {value!r}", field=name) from None


def query_actions(
    request: Request, *, machine_id: str | None = None, types: list[str] | None = None,
    statuses: list[str] | None = None, since: str | None = None, until: str | None = None,
    pending_approval: bool | None = None, session_id: int | None = None, limit: int = 1000,
) -> list[dict[str, Any]]:
    for t in types or []:
        if t not in ActionType.__members__.values():
            raise APIError(422, "invalid_request", f"unknown action type {t!r}", field="type")
    for s in statuses or []:
        if s not in ActionStatus.__members__.values():
            raise APIError(422, "invalid_request", f"unknown status {s!r}", field="status")
    f = action_store.ActionFilter(machine_id, tuple(types or ()), tuple(statuses or ()), _time(since, "from"),
                                  _time(until, "to"), pending_approval, session_id)
    svc = services(request)
    with svc.engine.begin() as conn:
        action_store.expire_overdue(conn, svc.clock.now())
        rows = action_store.query(conn, f, device_filter(principal_of(request), machine_actions.c.device_id), limit)
    names = {m["id"]: m["computerDnsName"] for m in list_machines(request)}
    return [action_json(a, names) for a in rows]


class MachineActionList(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    odata_context: str = Field(default="/api/$metadata#MachineActions", alias="@odata.context")
    value: list[MachineActionInfo]


class MachineActionValues(BaseModel):
    value: list[MachineActionInfo]


class PackageUri(BaseModel):
    value: str


@router.get("/machineactions", response_model=MachineActionList)
def machineactions(
    request: Request, machineId: str | None = None, type: list[str] | None = Query(default=None),
    status: list[str] | None = Query(default=None), from_: str | None = Query(default=None, alias="from"),
    to: str | None = None, pendingApproval: bool | None = None, limit: int = Query(default=1000, ge=1, le=10_000),
    q: odata.ODataQuery = odata.options(), _: Principal = requires(Permission.VIEW_DATA_SECOPS),
) -> Any:
    rows = query_actions(request, machine_id=machineId, types=type, statuses=status, since=from_, until=to,
                         pending_approval=pendingApproval, limit=odata.MAX_TOP if q.filtered else limit)
    found = [MachineActionInfo.model_validate(r) for r in rows]
    return odata.respond(q, found, MachineActionInfo, "/api/$metadata#MachineActions")


CSV_COLUMNS = ("id", "type", "scope", "status", "approval", "machineId", "computerDnsName", "requestor",
               "requestorComment", "decidedBy", "creationDateTimeUtc", "lastUpdateDateTimeUtc", "resultMessage",
               "undoOf")


@router.get("/machineactions/export.csv")
def export_csv(
    request: Request, machineId: str | None = None, type: list[str] | None = Query(default=None),
    status: list[str] | None = Query(default=None), from_: str | None = Query(default=None, alias="from"),
    to: str | None = None, _: Principal = requires(Permission.VIEW_DATA_SECOPS),
) -> Response:
    rows = query_actions(request, machine_id=machineId, types=type, statuses=status, since=from_, until=to,
                         limit=100_000)
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(CSV_COLUMNS)
    for r in rows:
        # A leading =, +, - or @ would make a spreadsheet run the cell as a formula.
        w.writerow(["'" + v if v[:1] in "=+-@" else v for v in (str(r[c] or "") for c in CSV_COLUMNS)])
    return Response(out.getvalue(), media_type="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="machineactions.csv"'})


def get_action(request: Request, action_id: str) -> MachineAction:
    svc = services(request)
    with svc.engine.begin() as conn:
        action_store.expire_overdue(conn, svc.clock.now())
        try:
            a = action_store.get(conn, action_id)
        except action_store.ActionNotFound as e:
            raise APIError(404, "not_found", str(e), field="id") from None
    try:
        get_machine(request, a.device_id)
    except APIError:
        raise APIError(404, "not_found", f"no machine action with id {action_id!r}", field="id") from None
    return a


@router.get("/machineactions/{action_id}", response_model=MachineActionInfo)
def machineaction(action_id: str, request: Request, _: Principal = requires(Permission.VIEW_DATA_SECOPS)
                  ) -> MachineActionInfo:
    a = get_action(request, action_id)
    return MachineActionInfo.model_validate(
        action_json(a, {a.device_id: get_machine(request, a.device_id)["computerDnsName"]}))


class CommentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    Comment: str = Field(max_length=4000)


def change_action(request: Request, action_id: str, what: str, comment: str) -> MachineAction:
    """Cancel or undo one action the caller may see."""
    get_action(request, action_id)
    svc = services(request)
    now = svc.clock.now()
    who = change(request, "", "", "")
    try:
        with svc.engine.begin() as conn:
            if what == "cancel":
                return action_service.cancel(conn, who, action_id, comment, now)
            return action_service.undo(conn, svc.settings, who, action_id, comment, now)
    except ActionRuleError as e:
        raise APIError(409 if e.field == "status" else 422, "conflict" if e.field == "status" else
                       "invalid_request", str(e), field=e.field) from None


@router.post("/machineactions/{action_id}/cancel", response_model=MachineActionInfo)
def cancel(action_id: str, body: CommentBody, request: Request, _: Principal = requires(REMEDIATE)
           ) -> MachineActionInfo:
    return MachineActionInfo.model_validate(action_json(change_action(request, action_id, "cancel", body.Comment)))


@router.post("/machineactions/{action_id}/undo", status_code=201, response_model=MachineActionInfo)
def undo(action_id: str, body: CommentBody, request: Request, _: Principal = requires(REMEDIATE)
         ) -> MachineActionInfo:
    return MachineActionInfo.model_validate(action_json(change_action(request, action_id, "undo", body.Comment)))


class DecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ActionIds: list[str] = Field(min_length=1, max_length=500)
    Comment: str = Field(max_length=4000)


def decide_many(request: Request, ids: list[str], approve: bool, comment: str) -> list[dict[str, Any]]:
    """Bulk approve or reject; all or nothing, so a half-applied bulk decision never happens."""
    for i in ids:
        get_action(request, i)
    svc = services(request)
    now = svc.clock.now()
    who = change(request, "", "", "")
    try:
        with svc.engine.begin() as conn:
            return [action_json(action_service.decide(conn, svc.settings, who, i, approve, comment, now))
                    for i in ids]
    except SelfApproval as e:
        # The bulk decision was rolled back as a whole; the refusal is audited in its own transaction.
        with svc.engine.begin() as conn:
            for i in ids:
                action_service.audit_refused_approval(conn, who, i, str(e), now)
        raise APIError(403, "four_eyes", str(e), field=e.field) from None
    except ActionRuleError as e:
        raise APIError(409, "conflict", str(e), field=e.field) from None
    except SigningKeyMissing as e:
        raise APIError(503, "not_configured", str(e)) from None


@router.post("/machineactions/approve", response_model=MachineActionValues)
def approve(body: DecisionBody, request: Request, _: Principal = requires(REMEDIATE)) -> MachineActionValues:
    return MachineActionValues(value=[MachineActionInfo.model_validate(a)
                                      for a in decide_many(request, body.ActionIds, True, body.Comment)])


@router.post("/machineactions/reject", response_model=MachineActionValues)
def reject(body: DecisionBody, request: Request, _: Principal = requires(REMEDIATE)) -> MachineActionValues:
    return MachineActionValues(value=[MachineActionInfo.model_validate(a)
                                      for a in decide_many(request, body.ActionIds, False, body.Comment)])


@router.get("/machineactions/{action_id}/GetPackageUri", response_model=PackageUri)
def package_uri(action_id: str, request: Request, _: Principal = requires(INVESTIGATE)) -> PackageUri:
    a = get_action(request, action_id)
    if a.artifact_sha256 is None:
        raise APIError(404, "not_found", "this action has no package (yet)", field="id")
    return PackageUri(value=str(request.url_for("download_package", action_id=action_id)))


@router.get("/machineactions/{action_id}/download")
def download_package(action_id: str, request: Request, _: Principal = requires(INVESTIGATE)) -> Response:
    a = get_action(request, action_id)
    path = action_service.artifact_path(services(request).settings, action_id)
    if a.artifact_sha256 is None or not path.exists():
        raise APIError(404, "not_found", "this action has no package (yet)", field="id")
    name = (f"{a.device_id}-investigation-package.tar.gz" if a.type is ActionType.COLLECT_INVESTIGATION_PACKAGE
            else f"{a.id}-file.bin")
    return FileResponse(path, media_type="application/octet-stream", filename=name,
                        headers={"X-Content-SHA256": a.artifact_sha256})
