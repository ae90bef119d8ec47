"""Portal pages for response: the device page's action forms and the action center."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from vigil.app import actions as app_actions
from vigil.app.errors import AppError
from vigil.core.actions import ActionStatus, ActionType
from vigil.core.rbac import Permission
from vigil.server import app_edge as edge
from vigil.server.api import alerts as api_alerts
from vigil.server.api import machineactions as api_actions
from vigil.server.api._json import iso
from vigil.server.api.machines import list_machines
from vigil.server.auth import CSRF_COOKIE, Principal, current_principal, services
from vigil.server.errors import APIError
from vigil.server.portal.web import check_form_csrf, page, paginate, refused, templates

router = APIRouter(include_in_schema=False)
OPEN = (ActionStatus.PENDING, ActionStatus.IN_PROGRESS)

PERIODS = {"day": timedelta(days=1), "week": timedelta(days=7), "month": timedelta(days=30),
           "6months": timedelta(days=183)}
# The device page's buttons: form name → (action type, permission, button label).
DEVICE_ACTIONS: dict[str, tuple[ActionType, Permission, str]] = {
    "isolate": (ActionType.ISOLATE, Permission.REMEDIATION_SECOPS, "Isolate device"),
    "unisolate": (ActionType.UNISOLATE, Permission.REMEDIATION_SECOPS, "Release from isolation"),
    "restrict": (ActionType.RESTRICT_CODE_EXECUTION, Permission.REMEDIATION_SECOPS, "Restrict app execution"),
    "unrestrict": (ActionType.UNRESTRICT_CODE_EXECUTION, Permission.REMEDIATION_SECOPS, "Remove app restrictions"),
    "collect": (ActionType.COLLECT_INVESTIGATION_PACKAGE, Permission.ALERTS_INVESTIGATION,
                "Collect investigation package"),
    "scan": (ActionType.RUN_ANTIVIRUS_SCAN, Permission.ALERTS_INVESTIGATION, "Run antivirus scan"),
}


# An alert's evidence rows' buttons: form name → (action type, button label); each needs the row's own values.
EVIDENCE_ACTIONS: dict[str, tuple[ActionType, str]] = {
    "kill": (ActionType.KILL_PROCESS, "Kill process"),
    "quarantine": (ActionType.STOP_AND_QUARANTINE_FILE, "Stop and quarantine file"),
}
# What the alert page offers on its device as a whole (their permissions and labels are the device page's).
ALERT_DEVICE_ACTIONS = ("isolate", "collect")


def evidence_parameters(kind: str, row: dict[str, Any]) -> dict[str, Any] | None:
    """The action's parameters taken from one evidence row; None when the row lacks what the action needs."""
    if kind == "kill":
        pid, created = row.get("ProcessId"), row.get("ProcessCreationTime")
        return {"ProcessId": pid, "ProcessCreationTime": created} if isinstance(pid, int) and created else None
    if kind == "quarantine":
        found = {"Sha256": row.get("SHA256"), "Path": row.get("FolderPath")}
        return {k: v for k, v in found.items() if v} or None
    return None


def alert_actions(who: Principal, evidence: list[dict[str, Any]]) -> dict[str, Any]:
    """The alert page's response buttons the caller may use: on the device, and per evidence row."""
    remediate = Permission.REMEDIATION_SECOPS in who.permissions
    return {
        "device": [(k, DEVICE_ACTIONS[k][2]) for k in ALERT_DEVICE_ACTIONS if DEVICE_ACTIONS[k][1] in who.permissions],
        "rows": [[(k, label) for k, (_, label) in EVIDENCE_ACTIONS.items()
                  if remediate and evidence_parameters(k, row) is not None] for row in evidence],
    }


def _admit(request: Request, who: Principal) -> None:
    # The API helpers read the caller from request.state, as the API guard leaves it there.
    request.state.principal = who


def device_actions_context(request: Request, machine_id: str) -> dict[str, Any]:
    """What the device page's response section needs: the buttons the caller may use and recent actions.

    A template global (device.html calls it), so the device page itself needs no change to show it.
    """
    who = current_principal(request)
    if who is None:
        return {"device_actions": [], "machine_actions": [], "csrf": "", "live_response": False}
    _admit(request, who)
    return {
        "device_actions": [(k, label) for k, (_, perm, label) in DEVICE_ACTIONS.items() if perm in who.permissions],
        "machine_actions": api_actions.query_actions(request, machine_id=machine_id, limit=50),
        "csrf": request.cookies.get(CSRF_COOKIE, ""),
        "live_response": Permission.LIVE_RESPONSE_BASIC in who.permissions,
    }


templates.env.globals["device_actions_context"] = device_actions_context


@router.post("/devices/{machine_id}/actions/{kind}")
def device_action(
    machine_id: str, kind: str, request: Request, csrf: Annotated[str, Form()], comment: Annotated[str, Form()] = "",
    isolation_type: Annotated[str, Form()] = "Full", allow_list: Annotated[str, Form()] = "",
    require_approval: Annotated[str, Form()] = "", who: Principal = page(Permission.VIEW_DATA_SECOPS),
) -> Response:
    """Each button posts here; the permission is the action's own, checked before anything happens."""
    check_form_csrf(request, csrf)
    _admit(request, who)
    if kind not in DEVICE_ACTIONS:
        return RedirectResponse(f"/devices/{machine_id}", status_code=303)
    action_type = DEVICE_ACTIONS[kind][0]
    params: dict[str, Any] = {}
    if action_type is ActionType.ISOLATE:
        params = {"IsolationType": isolation_type,
                  "AllowList": [a for a in allow_list.replace(",", " ").split() if a]}
    try:  # the actions service checks the action's own permission before anything happens
        app_actions.start(edge.store(request), services(request).clock, edge.principal(request), machine_id,
                          action_type, params, comment, bool(require_approval))
    except AppError as e:
        return refused(request, who, e)
    return RedirectResponse("/actioncenter", status_code=303)


@router.post("/alerts/{alert_id}/respond")
def alert_response(
    alert_id: str, request: Request, csrf: Annotated[str, Form()], kind: Annotated[str, Form()],
    evidence: Annotated[int | None, Form()] = None, comment: Annotated[str, Form()] = "",
    isolation_type: Annotated[str, Form()] = "Full", require_approval: Annotated[str, Form()] = "",
    who: Principal = page(Permission.VIEW_DATA_SECOPS),
) -> Response:
    """A response from an alert: the target comes from the stored alert (its device, its evidence row), never from
    the form, so a forged form cannot aim an action at a process or file the alert does not show."""
    check_form_csrf(request, csrf)
    _admit(request, who)
    a = api_alerts.get_alert_json(request, alert_id)
    params: dict[str, Any] | None
    if kind in ALERT_DEVICE_ACTIONS:
        action_type = DEVICE_ACTIONS[kind][0]
        params = {"IsolationType": isolation_type, "AllowList": []} if kind == "isolate" else {}
    elif kind in EVIDENCE_ACTIONS:
        action_type = EVIDENCE_ACTIONS[kind][0]
        rows = a["evidence"]
        if evidence is None or not 0 <= evidence < len(rows):
            raise APIError(422, "invalid_request", f"evidence: the alert has {len(rows)} evidence rows",
                           field="evidence")
        params = evidence_parameters(kind, rows[evidence])
        if params is None:
            what = "a process id and start time" if kind == "kill" else "a file hash or path"
            raise APIError(422, "invalid_request", f"evidence row {evidence} lacks {what}", field="evidence")
    else:
        kinds = ", ".join([*ALERT_DEVICE_ACTIONS, *EVIDENCE_ACTIONS])
        raise APIError(422, "invalid_request", f"kind: use one of {kinds}", field="kind")
    try:  # the actions service checks the action's own permission and the device's visibility
        app_actions.start(edge.store(request), services(request).clock, edge.principal(request), a["machineId"],
                          action_type, params, comment, bool(require_approval))
    except AppError as e:
        return refused(request, who, e)
    return RedirectResponse("/actioncenter", status_code=303)


@router.get("/actioncenter", response_class=HTMLResponse)
def action_center(
    request: Request, tab: str = "pending", period: str = "month", type: str = "",
    device: str = "", status: str = "", who: Principal = page(Permission.VIEW_DATA_SECOPS),
) -> Response:
    _admit(request, who)
    since = iso(request.app.state.services.clock.now() - PERIODS.get(period, PERIODS["month"]))
    types = [type] if type else None
    if tab == "history":
        # History: everything that has left the queue (finished), whatever its status filter says.
        statuses = [status] if status else [s.value for s in ActionStatus if s not in OPEN]
    else:
        statuses = [s.value for s in OPEN]
    rows = api_actions.query_actions(request, machine_id=device or None, types=types, statuses=statuses, since=since)
    pg, rows = paginate(request, rows, {
        "created": lambda a: a["creationDateTimeUtc"] or "", "type": lambda a: a["type"],
        "status": lambda a: a["status"], "requestor": lambda a: a["requestor"],
        "device": lambda a: (a["computerDnsName"] or a["machineId"] or "").lower(),
    }, "created", lambda a: " ".join(str(a.get(k) or "") for k in (
        "id", "type", "scope", "computerDnsName", "machineId", "status", "requestor", "requestorComment")))
    machines = list_machines(request)
    return templates.TemplateResponse(request, "actions/center.html", {
        "user": who.user, "rows": rows, "pg": pg, "q": request.query_params.get("q", ""),
        "tab": tab, "period": period, "type": type, "device": device,
        "status": status, "periods": list(PERIODS), "types": [t.value for t in ActionType],
        "statuses": [s.value for s in ActionStatus], "machines": machines,
        "csrf": request.cookies.get(CSRF_COOKIE, ""),
        "can_remediate": Permission.REMEDIATION_SECOPS in who.permissions,
        "export_url": "/api/machineactions/export.csv?" + urlencode(
            [("from", since or "")] + [("type", t) for t in types or []] + [("machineId", device)] * bool(device)
            + [("status", s) for s in statuses]),
    })


@router.post("/actioncenter/decide")
def decide(
    request: Request, csrf: Annotated[str, Form()], decision: Annotated[str, Form()],
    comment: Annotated[str, Form()] = "", ids: Annotated[list[str] | None, Form()] = None,
    who: Principal = page(Permission.REMEDIATION_SECOPS),
) -> Response:
    check_form_csrf(request, csrf)
    _admit(request, who)
    if ids:
        api_actions.decide_many(request, ids, decision == "approve", comment)
    return RedirectResponse("/actioncenter", status_code=303)


@router.post("/actioncenter/{action_id}/{what}")
def change(
    action_id: str, what: str, request: Request, csrf: Annotated[str, Form()], comment: Annotated[str, Form()] = "",
    who: Principal = page(Permission.REMEDIATION_SECOPS),
) -> Response:
    check_form_csrf(request, csrf)
    _admit(request, who)
    if what in ("undo", "cancel"):
        api_actions.change_action(request, action_id, what, comment)
    return RedirectResponse("/actioncenter?tab=history" if what == "undo" else "/actioncenter", status_code=303)
