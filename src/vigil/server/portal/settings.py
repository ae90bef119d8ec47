"""Portal pages for settings: onboarding packages and the audit log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from vigil.app import audit as app_audit
from vigil.app.errors import AppError
from vigil.core.rbac import Permission
from vigil.server import app_edge as edge
from vigil.server.api._json import iso
from vigil.server.api.onboarding import OnboardingBody, write_package
from vigil.server.auth import CSRF_COOKIE, Principal
from vigil.server.portal.web import check_form_csrf, page, page_request, paging_of, refused, templates

router = APIRouter(include_in_schema=False)


@router.get("/onboarding", response_class=HTMLResponse)
def onboarding_page(request: Request, who: Principal = page(Permission.MANAGE_SECURITY_SETTINGS)) -> Response:
    return templates.TemplateResponse(request, "settings/onboarding.html", {
        "user": who.user, "csrf": request.cookies.get(CSRF_COOKIE, ""), "is_admin": who.is_admin,
    })


@router.post("/onboarding")
def onboarding_submit(
    request: Request, csrf: Annotated[str, Form()], group: Annotated[str, Form()] = "",
    expires: Annotated[str, Form()] = "7d", uses: Annotated[int, Form(ge=1, le=100_000)] = 1,
    override_reason: Annotated[str, Form()] = "", who: Principal = page(Permission.MANAGE_SECURITY_SETTINGS),
) -> Response:
    """The package as a download: the token in it is shown once and never stored in clear."""
    check_form_csrf(request, csrf)
    body = OnboardingBody(group=group.strip() or None, expires=expires.strip() or "7d", uses=uses,
                          override_reason=override_reason.strip() or None)
    try:
        pkg = write_package(request, body)
    except AppError as e:
        return refused(request, who, e)
    return Response(pkg.model_dump_json(indent=2), media_type="application/json", headers={
        "Content-Disposition": 'attachment; filename="vigil-onboarding.json"', "Cache-Control": "no-store",
    })


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request, action: str | None = None, who: Principal = page(Permission.MANAGE_PORTAL_SETTINGS)
) -> Response:
    """The whole log, 50 a page: the store pages, sorts and searches (who, from, action, target, reason)."""
    req = page_request(request, "seq")
    try:
        found = app_audit.page_log(edge.store(request), edge.principal(request), req, action or None)
    except AppError as e:
        return refused(request, who, e)
    pg, rows = paging_of(request, req, found.total), [e.entry for e in found.rows]
    return templates.TemplateResponse(request, "settings/audit.html", {
        "rows": rows, "pg": pg, "q": request.query_params.get("q", ""), "action": action or "", "user": who.user,
        "iso": iso})
