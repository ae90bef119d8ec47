"""The portal's sign-in: the sign-in page and sign-out, then what follows a correct password: the TOTP step, or
the enrolment an overdue role forces.

Neither step holds a session: a short-lived signed cookie, scoped to its own path, names the user who
passed the password, so nothing else in the portal opens until the second factor is done.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import quote_plus

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from vigil.core.mfa import MfaState
from vigil.server.accounts import password_sign_in, record_sign_in, sign_in_status
from vigil.server.auth import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    TOKEN_LIFETIME_SECONDS,
    client_ip,
    end_session,
    issue_token,
    services,
)
from vigil.server.errors import APIError
from vigil.server.portal.web import public_page, secure, templates
from vigil.store.users import User, get_user

SECOND_FACTOR_PATH = "/login/totp"
ENROL_PATH = "/account/totp"
_COOKIES = {
    SECOND_FACTOR_PATH: ("vigil_mfa", "vigil-mfa-second-factor", 300),
    ENROL_PATH: ("vigil_mfa_enrol", "vigil-mfa-enrolment", 900),
}


def _serializer(request: Request, path: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(services(request).secret_key, salt=_COOKIES[path][1])


def step_redirect(request: Request, user: User, path: str) -> Response:
    """Send the browser to ``path`` carrying the cookie that says who passed the password."""
    name, _, seconds = _COOKIES[path]
    resp = RedirectResponse(path, status_code=303)
    resp.set_cookie(name, _serializer(request, path).dumps({"uid": user.id}), max_age=seconds, path=path,
                    httponly=True, secure=secure(request), samesite="strict")
    return resp


def step_user(request: Request, path: str) -> User | None:
    """The user whose password opened this step, while its cookie is fresh."""
    name, _, seconds = _COOKIES[path]
    try:
        data = _serializer(request, path).loads(request.cookies.get(name, ""), max_age=seconds)
    except BadSignature:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("uid"), int):
        return None
    with services(request).engine.connect() as conn:
        return get_user(conn, data["uid"])


def end_step(request: Request, resp: Response, path: str) -> Response:
    resp.delete_cookie(_COOKIES[path][0], path=path, secure=secure(request), httponly=True, samesite="strict")
    return resp


def after_password(request: Request, user: User, signed_in: Callable[[Request, User, str], Response]) -> Response:
    """What a correct password leads to: the TOTP step, the forced enrolment, or a session (``signed_in``)."""
    svc = services(request)
    status = sign_in_status(svc, user)
    if status.state is MfaState.ENROLLED:
        return step_redirect(request, user, SECOND_FACTOR_PATH)
    if status.state is MfaState.OVERDUE:
        return step_redirect(request, user, ENROL_PATH)
    record_sign_in(svc, user, "password", client_ip(request))
    # Inside the grace period the account page comes first: it says how long is left and offers the enrolment.
    return signed_in(request, user, "/account" if status.state is MfaState.GRACE else "/")


def sign_in_message(e: APIError) -> str:
    """The sign-in page's words for a refusal (the API's detail for throttling: it says how long to wait)."""
    if e.status == 429:
        return e.detail[:1].upper() + e.detail[1:]
    return "Wrong user name or password"


router = APIRouter(include_in_schema=False)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, error: str | None = None, _: None = public_page()) -> Response:
    csrf = secrets.token_urlsafe(24)
    oidc = services(request).settings.oidc
    resp = templates.TemplateResponse(
        request, "signin/login.html",
        {"csrf": csrf, "error": error, "user": None, "sso_name": oidc.provider_name if oidc else None},
    )
    # HttpOnly too: the token reaches forms through the page the server renders, never through document.cookie.
    resp.set_cookie(CSRF_COOKIE, csrf, secure=secure(request), samesite="strict", httponly=True)
    return resp


@router.post("/login")
def login_submit(
    request: Request, username: str = Form(...), password: str = Form(...), csrf: str = Form(...),
    _: None = public_page(),
) -> Response:
    svc = services(request)
    if not secrets.compare_digest(csrf, request.cookies.get(CSRF_COOKIE, "")):
        return RedirectResponse("/login?error=Your+session+expired%2C+try+again", status_code=303)
    try:
        user = password_sign_in(svc, username, password, client_ip(request))
    except APIError as e:
        return RedirectResponse(f"/login?error={quote_plus(sign_in_message(e))}", status_code=303)
    return after_password(request, user, signed_in_response)  # the TOTP step, a forced enrolment, or a session


def signed_in_response(request: Request, user: Any, to: str = "/") -> Response:
    """A fresh session (never one the visitor brought along: no session fixation) and a fresh CSRF token."""
    return start_session(request, RedirectResponse(to, status_code=303), user)


def start_session(request: Request, resp: Response, user: Any) -> Response:
    """Sets the new session and CSRF cookies on ``resp``, ending whatever session the request carried."""
    svc = services(request)
    if request.cookies.get(SESSION_COOKIE):
        end_session(svc, request.cookies[SESSION_COOKIE])
    resp.set_cookie(
        SESSION_COOKIE, issue_token(svc, user, client_ip(request)), max_age=TOKEN_LIFETIME_SECONDS, httponly=True,
        secure=secure(request), samesite="strict",
    )
    resp.set_cookie(CSRF_COOKIE, secrets.token_urlsafe(24), secure=secure(request), samesite="strict",
                    httponly=True)
    return resp


@router.post("/logout")
def logout(request: Request, _: None = public_page()) -> Response:
    if request.cookies.get(SESSION_COOKIE):
        end_session(services(request), request.cookies[SESSION_COOKIE])  # the old cookie is dead server-side too
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(SESSION_COOKIE)
    return resp
