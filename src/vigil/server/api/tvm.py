"""Threat and vulnerability management, with Defender's paths and field names:

GET /api/Software, /api/Software/{id}, /api/Software/{id}/machineReferences; GET /api/vulnerabilities,
/api/vulnerabilities/{cveId}; GET /api/machines/{id}/vulnerabilities, /api/machines/{id}/software;
GET /api/recommendations, /api/recommendations/{id}; GET /api/exposureScore, /api/exposureScore/ByMachineGroups,
/api/exposureScore/history; remediation requests: GET/POST /api/remediationTasks, GET /api/remediationTasks/{id}
(and /export, CSV); exceptions: POST /api/recommendations/{id}/exceptions, GET /api/exceptions,
POST /api/exceptions/{id}/cancel; GET /api/tvm/feeds (the imported bundle and each feed's age); secure
configuration: GET /api/configurationScore, /api/machines/SecureConfigurationsAssessmentByMachine (Defender's
export, every visible device), /api/machines/{id}/secureConfigurations (Vigil's: one device, with its score).

Reads need "View data (threat and vulnerability management)" and see only the caller's device groups; remediation
requests need "Remediation handling", exceptions "Exception handling"; every change is audited.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import Response

from vigil.app.stores import sql_store
from vigil.app.tvm import TvmService
from vigil.core.rbac import Permission
from vigil.server import app_edge as edge
from vigil.server.auth import Principal, requires
from vigil.server.services import Services

router = APIRouter()

VIEW = Permission.VIEW_DATA_TVM


def attach(svc: Services) -> TvmService:
    """The server's TVM service; its inventory step runs after every stored batch. create_app keeps it on app.state."""
    tvm = TvmService(sql_store(svc.engine), svc.settings.data_dir, svc.clock)
    svc.ingest.after_store.append(tvm.on_batch)
    svc.ingest.after_store.append(tvm.configuration.on_batch)
    return tvm


def service(request: Request) -> TvmService:
    tvm: TvmService = request.app.state.tvm
    return tvm


def _list(items: list[dict[str, Any]], top: int | None = None) -> dict[str, Any]:
    return {"value": items[:top] if top else items}


@router.get("/Software")
def list_software(request: Request, top: int | None = Query(None, alias="$top", ge=1, le=10_000),
                  _: Principal = requires(VIEW)) -> dict[str, Any]:
    with edge.translated():
        return _list(service(request).software(edge.principal(request)), top)


@router.get("/Software/{software_id}")
def get_software(software_id: str, request: Request, _: Principal = requires(VIEW)) -> dict[str, Any]:
    with edge.translated():
        return service(request).software_item(edge.principal(request), software_id)


@router.get("/Software/{software_id}/machineReferences")
def software_machines(software_id: str, request: Request, _: Principal = requires(VIEW)) -> dict[str, Any]:
    with edge.translated():
        return _list(service(request).software_machines(edge.principal(request), software_id))


@router.get("/vulnerabilities")
def list_vulnerabilities(request: Request, top: int | None = Query(None, alias="$top", ge=1, le=10_000),
                         _: Principal = requires(VIEW)) -> dict[str, Any]:
    with edge.translated():
        return _list(service(request).vulnerabilities(edge.principal(request)), top)


@router.get("/vulnerabilities/{cve_id}")
def get_vulnerability(cve_id: str, request: Request, _: Principal = requires(VIEW)) -> dict[str, Any]:
    with edge.translated():
        return service(request).vulnerability(edge.principal(request), cve_id)


def _machine_vulnerability(w: dict[str, Any]) -> dict[str, Any]:
    return {"id": w["CveId"], "name": w["CveId"], "severity": w["VulnerabilitySeverityLevel"],
            "cvssV3": w["CvssScore"], "epss": w["EpssScore"], "publicExploit": w["IsKnownExploited"],
            "exploitVerified": w["IsKnownExploited"], "productName": w["SoftwareName"],
            "productVendor": w["SoftwareVendor"], "productVersion": w["SoftwareVersion"],
            "ecosystem": w["Ecosystem"], "fixingKbId": w["RecommendedSecurityUpdateId"],
            "recommendedSecurityUpdate": w["RecommendedSecurityUpdate"], "fixedVersion": w["FixedVersion"],
            "advisories": w["AdvisoryIds"], "why": w["MatchReason"], "riskScore": w["RiskScore"],
            "cveTags": w["CveTags"], "cveMitigationStatus": w["CveMitigationStatus"],
            "firstSeen": edge_iso(w["FirstSeenTimestamp"])}


def edge_iso(value: Any) -> str | None:
    from vigil.server.api._json import iso

    return iso(value) if value is not None else None


@router.get("/machines/{machine_id}/vulnerabilities")
def machine_vulnerabilities(machine_id: str, request: Request, _: Principal = requires(VIEW)) -> dict[str, Any]:
    with edge.translated():
        ws = service(request).machine_vulnerabilities(edge.principal(request), machine_id)
    return _list([_machine_vulnerability(w) for w in ws])


@router.get("/machines/{machine_id}/software")
def machine_software(machine_id: str, request: Request, _: Principal = requires(VIEW)) -> dict[str, Any]:
    with edge.translated():
        return _list(service(request).machine_software(edge.principal(request), machine_id))


@router.get("/recommendations")
def list_recommendations(request: Request, top: int | None = Query(None, alias="$top", ge=1, le=10_000),
                         _: Principal = requires(VIEW)) -> dict[str, Any]:
    with edge.translated():
        return _list(service(request).recommendations(edge.principal(request)), top)


@router.get("/recommendations/{rec_id}")
def get_recommendation(rec_id: str, request: Request, _: Principal = requires(VIEW)) -> dict[str, Any]:
    with edge.translated():
        return service(request).recommendation(edge.principal(request), rec_id)


@router.get("/exposureScore")
def exposure_score(request: Request, _: Principal = requires(VIEW)) -> dict[str, Any]:
    with edge.translated():
        return service(request).exposure_score(edge.principal(request))


@router.get("/exposureScore/ByMachineGroups")
def exposure_by_groups(request: Request, _: Principal = requires(VIEW)) -> dict[str, Any]:
    with edge.translated():
        return _list(service(request).exposure_by_groups(edge.principal(request)))


@router.get("/exposureScore/history")
def exposure_history(request: Request, days: int = Query(30), _: Principal = requires(VIEW)) -> dict[str, Any]:
    with edge.translated():
        return _list(service(request).exposure_history(edge.principal(request), days))


@router.get("/remediationTasks")
def list_remediations(request: Request, _: Principal = requires(VIEW)) -> dict[str, Any]:
    with edge.translated():
        return _list(service(request).remediations(edge.principal(request)))


@router.post("/remediationTasks", status_code=201)
def create_remediation(request: Request, body: dict[str, Any] = Body(...),
                       _: Principal = requires(Permission.TVM_REMEDIATION_HANDLING)) -> dict[str, Any]:
    with edge.translated():
        return service(request).request_remediation(
            edge.principal(request), _text(body, "recommendationId"), _text(body, "dueOn"),
            _text(body, "priority"), body.get("requesterNotes") or "")


@router.get("/remediationTasks/{task_id}")
def get_remediation(task_id: int, request: Request, _: Principal = requires(VIEW)) -> dict[str, Any]:
    with edge.translated():
        return service(request).remediation(edge.principal(request), task_id)


@router.get("/remediationTasks/{task_id}/export")
def export_remediation(task_id: int, request: Request, _: Principal = requires(VIEW)) -> Response:
    with edge.translated():
        text = service(request).remediation_csv(edge.principal(request), task_id)
    return Response(text, media_type="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="remediation-{task_id}.csv"'})


@router.post("/recommendations/{rec_id}/exceptions", status_code=201)
def create_exception(rec_id: str, request: Request, body: dict[str, Any] = Body(...),
                     _: Principal = requires(Permission.TVM_EXCEPTION_HANDLING)) -> dict[str, Any]:
    groups = body.get("rbacGroupIds") or []
    if not isinstance(groups, list) or not all(isinstance(g, int) and not isinstance(g, bool) for g in groups):
        raise edge.http_error(_invalid("rbacGroupIds must be a list of device group ids", "rbacGroupIds"))
    days = body.get("expiresInDays")
    with edge.translated():
        return service(request).create_exception(
            edge.principal(request), rec_id, _text(body, "justification"), days if isinstance(days, int) else -1,
            _text(body, "scope"), groups, body.get("comment") or "")


@router.get("/exceptions")
def list_exceptions(request: Request, _: Principal = requires(VIEW)) -> dict[str, Any]:
    with edge.translated():
        return _list(service(request).exceptions(edge.principal(request)))


@router.post("/exceptions/{exception_id}/cancel")
def cancel_exception(exception_id: int, request: Request, body: dict[str, Any] = Body(default_factory=dict),
                     _: Principal = requires(Permission.TVM_EXCEPTION_HANDLING)) -> dict[str, Any]:
    with edge.translated():
        return service(request).cancel_exception(edge.principal(request), exception_id, body.get("comment") or "")


@router.get("/configurationScore")
def configuration_score(request: Request, _: Principal = requires(VIEW)) -> dict[str, Any]:
    with edge.translated():
        return service(request).configuration.configuration_score(edge.principal(request))


# Before /machines/{id} (the TVM router is included ahead of the machines one).
@router.get("/machines/SecureConfigurationsAssessmentByMachine")
def configuration_assessments(request: Request, top: int | None = Query(None, alias="$top", ge=1, le=200_000),
                              _: Principal = requires(VIEW)) -> dict[str, Any]:
    with edge.translated():
        return _list(service(request).configuration.assessments(edge.principal(request)), top)


@router.get("/machines/{machine_id}/secureConfigurations")
def machine_configurations(machine_id: str, request: Request, _: Principal = requires(VIEW)) -> dict[str, Any]:
    with edge.translated():
        reads = service(request).configuration
        caller = edge.principal(request)
        rows = reads.assessments(caller, machine_id)
        score = reads.device_score(caller, machine_id)
    return {"secureScore": score, "value": rows}


@router.get("/tvm/feeds")
def feeds(request: Request, _: Principal = requires(VIEW)) -> dict[str, Any]:
    with edge.translated():
        return service(request).feed_status(edge.principal(request))


def _invalid(message: str, field: str) -> Any:
    from vigil.app.errors import InvalidInput

    return InvalidInput(message, field=field)


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise edge.http_error(_invalid(f"{key} is required (text)", key))
    return value
