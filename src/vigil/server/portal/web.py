"""What every portal page shares: the templates (a shared layout and component macros), the page guard, the CSRF
check of forms, and the one refusal page."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from fastapi import Depends, Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates

from vigil.app.errors import AppError
from vigil.core.rbac import Permission
from vigil.server import app_edge as edge
from vigil.server.auth import CSRF_COOKIE, PERMISSION_ATTR, PUBLIC, Principal, current_principal
from vigil.server.errors import APIError

HERE = Path(__file__).parent
# One folder per area (devices/, alerts/, ...) and layout/ with the base page and the component macros.
templates = Jinja2Templates(directory=str(HERE / "templates"))
STATIC_DIR = HERE / "static"


def page(permission: Permission) -> Any:
    """Like ``requires`` for pages: an anonymous visitor is sent to the sign-in page instead."""

    def check(request: Request) -> Principal:
        principal = current_principal(request)
        if principal is None:
            raise APIError(303, "login_required", "sign in first", headers={"Location": "/login"})
        if permission not in principal.permissions:
            raise APIError(403, "forbidden", f"this page needs the permission '{permission}'")
        request.state.principal = principal
        return principal

    setattr(check, PERMISSION_ATTR, permission)
    return Depends(check)


def public_page() -> Any:
    def allow() -> None:
        return None

    setattr(allow, PERMISSION_ATTR, PUBLIC)
    return Depends(allow)


def secure(request: Request) -> bool:
    return request.url.scheme == "https"


def check_form_csrf(request: Request, sent: str) -> None:
    if not secrets.compare_digest(sent, request.cookies.get(CSRF_COOKIE, "")) or not sent:
        raise APIError(403, "csrf_failed", "the form is stale or forged; reload the page and try again")


# The portal's one error table: the same status as the API (app_edge.HTTP_ERRORS) and a page saying why.
PORTAL_TITLES: dict[str, str] = {
    "forbidden": "Not allowed", "not_found": "Not found", "ambiguous": "Ambiguous",
    "signoff_required": "Sign-off required", "invalid_request": "Not valid", "not_configured": "Not configured",
}


def refused(request: Request, who: Principal, e: AppError) -> Response:
    err = edge.http_error(e)
    return templates.TemplateResponse(request, "layout/refused.html", {
        "user": who.user, "title": PORTAL_TITLES.get(err.error, "Refused"), "error": err.error,
        "detail": err.detail, "field": err.field,
    }, status_code=err.status)
