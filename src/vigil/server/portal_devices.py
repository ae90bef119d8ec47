"""Portal pages over the devices and onboarding services: onboarding packages, offboarding, and the refusal page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from vigil.app import devices as app_devices
from vigil.app.errors import AppError
from vigil.core.rbac import Permission
from vigil.server import app_edge as edge
from vigil.server.api.onboarding import OnboardingBody, write_package
from vigil.server.auth import CSRF_COOKIE, Principal, current_principal, services
from vigil.server.portal import page, templates
from vigil.server.portal_alerts import _check_form_csrf

router = APIRouter(include_in_schema=False)

# The portal's one error table: the same status as the API (app_edge.HTTP_ERRORS) and a page saying why.
PORTAL_TITLES: dict[str, str] = {
    "forbidden": "Not allowed", "not_found": "Not found", "ambiguous": "Ambiguous",
    "signoff_required": "Sign-off required", "invalid_request": "Not valid", "not_configured": "Not configured",
}


def refused(request: Request, who: Principal, e: AppError) -> Response:
    err = edge.http_error(e)
    return templates.TemplateResponse(request, "refused.html", {
        "user": who.user, "title": PORTAL_TITLES.get(err.error, "Refused"), "error": err.error,
        "detail": err.detail, "field": err.field,
    }, status_code=err.status)


@router.get("/onboarding", response_class=HTMLResponse)
def onboarding_page(request: Request, who: Principal = page(Permission.MANAGE_SECURITY_SETTINGS)) -> Response:
    return templates.TemplateResponse(request, "onboarding.html", {
        "user": who.user, "csrf": request.cookies.get(CSRF_COOKIE, ""), "is_admin": who.is_admin,
    })


@router.post("/onboarding")
def onboarding_submit(
    request: Request, csrf: Annotated[str, Form()], group: Annotated[str, Form()] = "",
    expires: Annotated[str, Form()] = "7d", uses: Annotated[int, Form(ge=1, le=100_000)] = 1,
    override_reason: Annotated[str, Form()] = "", who: Principal = page(Permission.MANAGE_SECURITY_SETTINGS),
) -> Response:
    """The package as a download: the token in it is shown once and never stored in clear."""
    _check_form_csrf(request, csrf)
    body = OnboardingBody(group=group.strip() or None, expires=expires.strip() or "7d", uses=uses,
                          override_reason=override_reason.strip() or None)
    try:
        pkg = write_package(request, body)
    except AppError as e:
        return refused(request, who, e)
    return Response(pkg.model_dump_json(indent=2), media_type="application/json", headers={
        "Content-Disposition": 'attachment; filename="vigil-onboarding.json"', "Cache-Control": "no-store",
    })


@router.post("/devices/{machine_id}/offboard")
def offboard_submit(
    machine_id: str, request: Request, csrf: Annotated[str, Form()], comment: Annotated[str, Form()] = "",
    who: Principal = page(Permission.MANAGE_SECURITY_SETTINGS),
) -> Response:
    _check_form_csrf(request, csrf)
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
