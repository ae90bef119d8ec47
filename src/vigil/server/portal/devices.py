"""Portal pages for devices: the inventory, the device page with its timeline, offboarding, and the identity
changes a device reported (accepted or rejected by an administrator)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from vigil.app import devices as app_devices
from vigil.app.errors import AppError
from vigil.core.rbac import Permission
from vigil.core.telemetry import TABLES
from vigil.server import app_edge as edge
from vigil.server.api import machineidentity as api_identity
from vigil.server.api import machines as api_machines
from vigil.server.auth import CSRF_COOKIE, Principal, current_principal, services
from vigil.server.errors import APIError
from vigil.server.portal.web import check_form_csrf, page, refused, templates

router = APIRouter(include_in_schema=False)
DECIDE = Permission.MANAGE_PORTAL_SETTINGS  # as the API's accept and reject routes


@router.get("/devices", response_class=HTMLResponse)
def devices_page(request: Request, who: Principal = page(Permission.VIEW_DATA_SECOPS)) -> Response:
    machines = api_machines.list_machines(request)
    return templates.TemplateResponse(request, "devices/list.html", {"machines": machines, "user": who.user})


@router.get("/devices/{machine_id}", response_class=HTMLResponse)
def device_page(
    machine_id: str, request: Request, table: str = "DeviceProcessEvents",
    who: Principal = page(Permission.VIEW_DATA_SECOPS),
) -> Response:
    machine = api_machines.get_machine(request, machine_id)
    tables = None if table == "all" else [table]
    events = api_machines.machine_timeline(request, machine_id, None, None, tables, 500)
    return templates.TemplateResponse(
        request, "devices/device.html",
        {"m": machine, "events": events, "table": table, "tables": ["all", *TABLES], "user": who.user},
    )


@router.post("/devices/{machine_id}/offboard")
def offboard_submit(
    machine_id: str, request: Request, csrf: Annotated[str, Form()], comment: Annotated[str, Form()] = "",
    who: Principal = page(Permission.MANAGE_SECURITY_SETTINGS),
) -> Response:
    check_form_csrf(request, csrf)
    try:
        app_devices.offboard(edge.store(request), services(request).clock, edge.principal(request), machine_id,
                             comment.strip() or None)
    except AppError as e:
        return refused(request, who, e)
    return RedirectResponse(f"/devices/{machine_id}", status_code=303)


def offboard_context(request: Request) -> dict[str, object]:
    """What the device page's offboard form needs; a template global, as device_actions_context is."""
    who = current_principal(request)
    allowed = who is not None and Permission.MANAGE_SECURITY_SETTINGS in who.permissions
    return {"allowed": allowed, "csrf": request.cookies.get(CSRF_COOKIE, "") if allowed else ""}


templates.env.globals["offboard_context"] = offboard_context


def device_identity_context(request: Request, machine_id: str) -> dict[str, Any]:
    """A template global (device.html includes device_identity.html): the changes and whether the caller decides."""
    who = current_principal(request)
    if who is None:
        return {"identity_changes": [], "can_decide": False, "csrf": ""}
    request.state.principal = who
    return {"identity_changes": api_identity.identity_changes(request, machine_id),
            "can_decide": DECIDE in who.permissions, "csrf": request.cookies.get(CSRF_COOKIE, "")}


templates.env.globals["device_identity_context"] = device_identity_context


@router.post("/devices/{machine_id}/identity/{change_id}/{decision}")
def decide_identity_change(
    machine_id: str, change_id: int, decision: str, request: Request, csrf: Annotated[str, Form()],
    revision: Annotated[int, Form()], comment: Annotated[str, Form()] = "",
    who: Principal = page(DECIDE),
) -> Response:
    check_form_csrf(request, csrf)
    if decision not in ("accept", "reject"):
        raise APIError(404, "not_found", f"no decision {decision!r}; use accept or reject", field="decision")
    request.state.principal = who
    api_identity.decide(request, machine_id, change_id, decision == "accept",
                        api_identity.DecisionBody(Revision=revision, Comment=comment or None))
    return RedirectResponse(f"/devices/{machine_id}", status_code=303)
