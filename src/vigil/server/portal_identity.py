"""The device page's identity changes: what the device reported, and the administrator's accept/reject forms."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from vigil.core.rbac import Permission
from vigil.server.api import machineidentity as api_identity
from vigil.server.auth import CSRF_COOKIE, Principal, current_principal
from vigil.server.errors import APIError
from vigil.server.portal import page, templates
from vigil.server.portal_alerts import _check_form_csrf

router = APIRouter(include_in_schema=False)
DECIDE = Permission.MANAGE_PORTAL_SETTINGS  # as the API's accept and reject routes


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
    _check_form_csrf(request, csrf)
    if decision not in ("accept", "reject"):
        raise APIError(404, "not_found", f"no decision {decision!r}; use accept or reject", field="decision")
    request.state.principal = who
    api_identity.decide(request, machine_id, change_id, decision == "accept",
                        api_identity.DecisionBody(Revision=revision, Comment=comment or None))
    return RedirectResponse(f"/devices/{machine_id}", status_code=303)
