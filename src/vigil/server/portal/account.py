"""Portal pages for one's own account: the TOTP sign-in step, password change, TOTP enrolment and recovery codes."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import quote_plus

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from vigil.server import accounts, totp
from vigil.server.auth import (
    CSRF_COOKIE,
    PERMISSION_ATTR,
    SIGNED_IN,
    Principal,
    client_ip,
    current_principal,
    public,
    services,
)
from vigil.server.errors import APIError
from vigil.server.portal.signin import (
    ENROL_PATH,
    SECOND_FACTOR_PATH,
    end_step,
    sign_in_message,
    signed_in_response,
    start_session,
    step_user,
)
from vigil.server.portal.web import templates
from vigil.store.users import User, get_user

router = APIRouter(include_in_schema=False)
ENROLLING = "signed-in, or past the password with a second factor to set up"


def _form_csrf(request: Request, sent: str) -> None:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie or not secrets.compare_digest(sent, cookie):
        raise APIError(403, "csrf_failed", "missing or wrong CSRF token; reload the page and try again")


def _fresh(request: Request, user: User) -> User:
    with services(request).engine.connect() as conn:
        fresh = get_user(conn, user.id)
    if fresh is None:
        raise APIError(303, "login_required", "sign in first", headers={"Location": "/login"})
    return fresh


def _account_page() -> Any:
    """Any signed-in user, whatever their permissions: everyone may look after their own account."""

    def check(request: Request) -> Principal:
        principal = current_principal(request)
        if principal is None:
            raise APIError(303, "login_required", "sign in first", headers={"Location": "/login"})
        request.state.principal = principal
        return principal

    setattr(check, PERMISSION_ATTR, SIGNED_IN)
    return Depends(check)


def _enrolling() -> Any:
    """A signed-in user, or one an overdue MFA policy sent here after the password (the enrolment cookie)."""

    def check(request: Request) -> tuple[User, bool]:
        principal = current_principal(request)
        if principal is not None:
            return _fresh(request, principal.user), False
        user = step_user(request, ENROL_PATH)
        if user is None:
            raise APIError(303, "login_required", "sign in first", headers={"Location": "/login"})
        return user, True

    setattr(check, PERMISSION_ATTR, ENROLLING)
    return Depends(check)


def _sentence(e: APIError) -> str:
    return e.detail[:1].upper() + e.detail[1:]


def _back(to: str = "/account", message: str | None = None, error: str | None = None) -> Response:
    q = f"?message={quote_plus(message)}" if message else (f"?error={quote_plus(error)}" if error else "")
    return RedirectResponse(f"{to}{q}", status_code=303)


@router.get(SECOND_FACTOR_PATH, response_class=HTMLResponse)
def second_factor_page(request: Request, error: str | None = None, _: None = public()) -> Response:
    user = step_user(request, SECOND_FACTOR_PATH)
    if user is None:
        return _back("/login", error="Sign in again: the step for your code took longer than 5 minutes")
    return _render(request, "signin/login_totp.html", {"user": None, "error": error})


def _render(request: Request, name: str, context: dict[str, Any]) -> Response:
    token = request.cookies.get(CSRF_COOKIE, "") or secrets.token_urlsafe(24)
    resp = templates.TemplateResponse(request, name, {**context, "csrf": token})
    if not request.cookies.get(CSRF_COOKIE):
        resp.set_cookie(CSRF_COOKIE, token, secure=request.url.scheme == "https", samesite="strict", httponly=True)
    resp.headers["Cache-Control"] = "no-store"  # secrets and recovery codes must not linger in a cache
    return resp


@router.post(SECOND_FACTOR_PATH)
def second_factor_submit(
    request: Request, code: str = Form(""), recovery_code: str = Form(""), csrf: str = Form(""),
    _: None = public(),
) -> Response:
    _form_csrf(request, csrf)
    user = step_user(request, SECOND_FACTOR_PATH)
    if user is None:
        return _back("/login", error="Sign in again: the step for your code took longer than 5 minutes")
    svc = services(request)
    try:
        method = accounts.second_factor(svc, user, client_ip(request), code=code.strip(),
                                        recovery_code=recovery_code.strip())
    except APIError as e:
        message = sign_in_message(e) if e.status == 429 else _sentence(e)
        return _back(SECOND_FACTOR_PATH, error=message)
    accounts.record_sign_in(svc, user, method, client_ip(request))
    # After a recovery code the account page shows how many are left (and offers a new set).
    resp = signed_in_response(request, user, "/account" if recovery_code.strip() else "/")
    return end_step(request, resp, SECOND_FACTOR_PATH)


@router.get("/account", response_class=HTMLResponse)
def account_page(
    request: Request, message: str | None = None, error: str | None = None, who: Principal = _account_page(),
) -> Response:
    user = _fresh(request, who.user)
    return _render(request, "account/account.html", {
        "user": user, "message": message, "error": error, "mfa": accounts.mfa_overview(services(request), user),
    })


@router.post("/account/password")
def account_password(
    request: Request, current_password: str = Form(""), new_password: str = Form(""), csrf: str = Form(""),
    who: Principal = _account_page(),
) -> Response:
    _form_csrf(request, csrf)
    user = _fresh(request, who.user)
    try:
        accounts.change_password(services(request), user, new_password, user.username, client_ip(request),
                                 current=current_password)
    except APIError as e:
        return _back(error=_sentence(e))
    # Every session was revoked, this one too; the browser that made the change gets a fresh one.
    return start_session(request, _back(message="Password changed. Every other session was signed out."), user)


@router.get(ENROL_PATH, response_class=HTMLResponse)
def enrol_page(request: Request, error: str | None = None, who: tuple[User, bool] = _enrolling()) -> Response:
    user, forced = who
    try:
        secret = accounts.totp_enrolment(services(request), user)
    except APIError as e:
        return _back(error=_sentence(e))
    grouped = " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))
    return _render(request, "account/totp_enrol.html", {
        "user": None if forced else user, "account": user, "forced": forced, "secret": grouped, "error": error,
    })


@router.get(ENROL_PATH + "/qr.svg")
def enrol_qr(request: Request, who: tuple[User, bool] = _enrolling()) -> Response:
    user, _ = who
    secret = accounts.totp_enrolment(services(request), user)
    svg = totp.qr_svg(totp.provisioning_uri(secret, user.username, accounts.ISSUER))
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "no-store"})


@router.post(ENROL_PATH)
def enrol_submit(
    request: Request, code: str = Form(""), csrf: str = Form(""), who: tuple[User, bool] = _enrolling(),
) -> Response:
    _form_csrf(request, csrf)
    user, forced = who
    svc = services(request)
    try:
        codes = accounts.confirm_totp(svc, user, code, client_ip(request))
    except APIError as e:
        return _back(ENROL_PATH, error=_sentence(e))
    if forced:
        accounts.record_sign_in(svc, user, "password+totp_enrolment", client_ip(request))
    resp = _render(request, "account/recovery_codes.html", {"user": user, "codes": codes, "enrolled": True})
    # Turning TOTP on revoked every session; this browser continues in a fresh one.
    return end_step(request, start_session(request, resp, user), ENROL_PATH)


@router.post("/account/recovery-codes")
def account_recovery_codes(
    request: Request, password: str = Form(""), csrf: str = Form(""), who: Principal = _account_page(),
) -> Response:
    _form_csrf(request, csrf)
    user = _fresh(request, who.user)
    try:
        codes = accounts.new_codes(services(request), user, password, client_ip(request))
    except APIError as e:
        return _back(error=_sentence(e))
    return _render(request, "account/recovery_codes.html", {"user": user, "codes": codes, "enrolled": False})


@router.post("/account/totp/disable")
def account_totp_disable(
    request: Request, password: str = Form(""), csrf: str = Form(""), who: Principal = _account_page(),
) -> Response:
    _form_csrf(request, csrf)
    user = _fresh(request, who.user)
    svc = services(request)
    try:
        if not accounts.turn_off_totp(svc, user, user.username, client_ip(request), password=password):
            return _back(error="TOTP is not on for this account")
    except APIError as e:
        return _back(error=_sentence(e))
    return start_session(request, _back(message="TOTP is off. Every other session was signed out."), user)
