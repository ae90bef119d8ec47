"""Portal pages for the Prepare phase: the deployment plan, sign-off, gate and rings."""

from __future__ import annotations

import secrets
from urllib.parse import quote_plus

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from vigil.core.rbac import Permission
from vigil.server.api import plan as api_plan
from vigil.server.auth import CSRF_COOKIE, Principal
from vigil.server.errors import APIError
from vigil.server.portal.web import page, templates

router = APIRouter(include_in_schema=False)


def _form_csrf(request: Request, sent: str) -> None:
    """Portal forms carry the CSRF cookie's value in a hidden field (double submit)."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie or not secrets.compare_digest(sent, cookie):
        raise APIError(403, "csrf_failed", "missing or wrong CSRF token; reload the page and try again")


def _back(message: str | None = None, error: str | None = None) -> Response:
    q = f"?message={quote_plus(message)}" if message else (f"?error={quote_plus(error)}" if error else "")
    return RedirectResponse(f"/plan{q}", status_code=303)


@router.get("/plan", response_class=HTMLResponse)
def plan_page(
    request: Request, message: str | None = None, error: str | None = None,
    who: Principal = page(Permission.VIEW_PLAN_REPORTS),
) -> Response:
    st = api_plan.state_json(request)
    return templates.TemplateResponse(request, "plan/plan.html", {
        "st": st, "user": who.user, "message": message, "error": error, "csrf": request.cookies.get(CSRF_COOKIE, ""),
        "can_edit": Permission.MANAGE_PORTAL_SETTINGS in who.permissions,
        "me": (who.user.email or "").lower(),
    })


@router.post("/plan/init")
def plan_init(
    request: Request, organization: str = Form(...), csrf: str = Form(""),
    who: Principal = page(Permission.MANAGE_PORTAL_SETTINGS),
) -> Response:
    _form_csrf(request, csrf)
    try:
        api_plan.init_plan(api_plan.InitBody(organization=organization), request, who)
    except APIError as e:
        return _back(error=e.detail)
    return _back("Plan created from Defender's template; fill in the gaps.")


@router.post("/plan/import")
def plan_import(
    request: Request, file: str = Form(...), csrf: str = Form(""),
    who: Principal = page(Permission.MANAGE_PORTAL_SETTINGS),
) -> Response:
    _form_csrf(request, csrf)
    try:
        changes = api_plan.import_file(request, who, file.replace("\r\n", "\n"), "uploaded plan")
    except APIError as e:
        return _back(error=e.detail)
    return _back(f"Imported the prepared plan with its sign-offs; applied {len(changes)} change(s).")


@router.post("/plan")
def plan_save(
    request: Request, document: str = Form(...), csrf: str = Form(""),
    who: Principal = page(Permission.MANAGE_PORTAL_SETTINGS),
) -> Response:
    _form_csrf(request, csrf)
    try:
        added = api_plan.save_document(request, who, document.replace("\r\n", "\n"))
    except APIError as e:
        return _back(error=e.detail)
    return _back("Saved a new version; earlier sign-offs no longer count." if added else "No change.")


@router.post("/plan/signoff")
def plan_sign(request: Request, csrf: str = Form(""), who: Principal = page(Permission.VIEW_PLAN_REPORTS)) -> Response:
    _form_csrf(request, csrf)
    try:
        api_plan.sign_current(request, who)
    except APIError as e:
        return _back(error=e.detail)
    return _back(f"Signed off by {who.user.username}.")
