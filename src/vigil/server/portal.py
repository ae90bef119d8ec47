"""The web portal: server-rendered pages over the same services as the API."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from vigil.core.rbac import Permission
from vigil.core.telemetry import TABLES
from vigil.server.accounts import password_sign_in
from vigil.server.api import machines as api_machines
from vigil.server.auth import (
    CSRF_COOKIE,
    PERMISSION_ATTR,
    PUBLIC,
    SESSION_COOKIE,
    TOKEN_LIFETIME_SECONDS,
    Principal,
    client_ip,
    current_principal,
    end_session,
    issue_token,
    services,
)
from vigil.server.errors import APIError
from vigil.server.portal_signin import after_password, sign_in_message

templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
router = APIRouter(include_in_schema=False)


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


def _public() -> Any:
    def allow() -> None:
        return None

    setattr(allow, PERMISSION_ATTR, PUBLIC)
    return Depends(allow)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


@router.get("/", response_class=HTMLResponse)
def home(_: None = _public()) -> Response:
    return RedirectResponse("/devices", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, error: str | None = None, _: None = _public()) -> Response:
    csrf = secrets.token_urlsafe(24)
    oidc = services(request).settings.oidc
    resp = templates.TemplateResponse(
        request, "login.html",
        {"csrf": csrf, "error": error, "user": None, "sso_name": oidc.provider_name if oidc else None},
    )
    # HttpOnly too: the token reaches forms through the page the server renders, never through document.cookie.
    resp.set_cookie(CSRF_COOKIE, csrf, secure=_secure(request), samesite="strict", httponly=True)
    return resp


@router.post("/login")
def login_submit(
    request: Request, username: str = Form(...), password: str = Form(...), csrf: str = Form(...),
    _: None = _public(),
) -> Response:
    svc = services(request)
    if not secrets.compare_digest(csrf, request.cookies.get(CSRF_COOKIE, "")):
        return RedirectResponse("/login?error=Your+session+expired%2C+try+again", status_code=303)
    try:
        user = password_sign_in(svc, username, password, client_ip(request))
    except APIError as e:
        return RedirectResponse(f"/login?error={quote_plus(sign_in_message(e))}", status_code=303)
    return after_password(request, user, signed_in_response)  # the TOTP step, a forced enrolment, or a session


def signed_in_response(request: Request, user: Any, to: str = "/devices") -> Response:
    """A fresh session (never one the visitor brought along: no session fixation) and a fresh CSRF token."""
    return start_session(request, RedirectResponse(to, status_code=303), user)


def start_session(request: Request, resp: Response, user: Any) -> Response:
    """Sets the new session and CSRF cookies on ``resp``, ending whatever session the request carried."""
    svc = services(request)
    if request.cookies.get(SESSION_COOKIE):
        end_session(svc, request.cookies[SESSION_COOKIE])
    resp.set_cookie(
        SESSION_COOKIE, issue_token(svc, user, client_ip(request)), max_age=TOKEN_LIFETIME_SECONDS, httponly=True,
        secure=_secure(request), samesite="strict",
    )
    resp.set_cookie(CSRF_COOKIE, secrets.token_urlsafe(24), secure=_secure(request), samesite="strict",
                    httponly=True)
    return resp


@router.post("/logout")
def logout(request: Request, _: None = _public()) -> Response:
    if request.cookies.get(SESSION_COOKIE):
        end_session(services(request), request.cookies[SESSION_COOKIE])  # the old cookie is dead server-side too
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(SESSION_COOKIE)
    return resp


@router.get("/devices", response_class=HTMLResponse)
def devices_page(request: Request, who: Principal = page(Permission.VIEW_DATA_SECOPS)) -> Response:
    machines = api_machines.list_machines(request)
    return templates.TemplateResponse(request, "devices.html", {"machines": machines, "user": who.user})


@router.get("/devices/{machine_id}", response_class=HTMLResponse)
def device_page(
    machine_id: str, request: Request, table: str = "DeviceProcessEvents",
    who: Principal = page(Permission.VIEW_DATA_SECOPS),
) -> Response:
    machine = api_machines.get_machine(request, machine_id)
    tables = None if table == "all" else [table]
    events = api_machines.machine_timeline(request, machine_id, None, None, tables, 500)
    return templates.TemplateResponse(
        request, "device.html",
        {"m": machine, "events": events, "table": table, "tables": ["all", *TABLES], "user": who.user},
    )
