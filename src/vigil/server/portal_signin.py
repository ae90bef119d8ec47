"""The portal's sign-in after the password: the TOTP step, or the enrolment an overdue role forces.

Neither step holds a session: a short-lived signed cookie, scoped to its own path, names the user who
passed the password, so nothing else in the portal opens until the second factor is done.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from vigil.core.mfa import MfaState
from vigil.server.accounts import record_sign_in, sign_in_status
from vigil.server.auth import client_ip, services
from vigil.server.errors import APIError
from vigil.store.users import User, get_user

SECOND_FACTOR_PATH = "/login/totp"
ENROL_PATH = "/account/totp"
_COOKIES = {
    SECOND_FACTOR_PATH: ("vigil_mfa", "vigil-mfa-second-factor", 300),
    ENROL_PATH: ("vigil_mfa_enrol", "vigil-mfa-enrolment", 900),
}


def _serializer(request: Request, path: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(services(request).secret_key, salt=_COOKIES[path][1])


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def step_redirect(request: Request, user: User, path: str) -> Response:
    """Send the browser to ``path`` carrying the cookie that says who passed the password."""
    name, _, seconds = _COOKIES[path]
    resp = RedirectResponse(path, status_code=303)
    resp.set_cookie(name, _serializer(request, path).dumps({"uid": user.id}), max_age=seconds, path=path,
                    httponly=True, secure=_secure(request), samesite="strict")
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
    resp.delete_cookie(_COOKIES[path][0], path=path, secure=_secure(request), httponly=True, samesite="strict")
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
    return signed_in(request, user, "/account" if status.state is MfaState.GRACE else "/devices")


def sign_in_message(e: APIError) -> str:
    """The sign-in page's words for a refusal (the API's detail for throttling: it says how long to wait)."""
    if e.status == 429:
        return e.detail[:1].upper() + e.detail[1:]
    return "Wrong user name or password"
