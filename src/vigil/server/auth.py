"""Who is calling: analysts by session cookie or bearer token, devices by their credential.

Each route declares the permission it needs with ``requires(...)`` right where it is defined; the
route walker test reads ``PERMISSION_ATTR`` off the dependency to prove every route is guarded.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request
from itsdangerous import BadSignature, URLSafeTimedSerializer

from vigil.core.rbac import Permission, permissions_of
from vigil.server.errors import APIError
from vigil.server.services import Services
from vigil.store.devices import authenticate_device
from vigil.store.users import User, get_user

SESSION_COOKIE = "vigil_session"
CSRF_COOKIE = "vigil_csrf"
CSRF_HEADER = "x-csrf-token"
TOKEN_LIFETIME_SECONDS = 12 * 3600
PERMISSION_ATTR = "vigil_permission"
PUBLIC = "public"  # marks routes that deliberately need no sign-in (health, login)


@dataclass(frozen=True)
class Principal:
    user: User
    permissions: frozenset[Permission]
    via_cookie: bool


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def _serializer(svc: Services) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(svc.secret_key, salt="vigil-session")


def issue_token(svc: Services, user: User) -> str:
    return _serializer(svc).dumps({"uid": user.id, "n": secrets.token_hex(4)})


def _user_from_token(svc: Services, token: str) -> User | None:
    try:
        data = _serializer(svc).loads(token, max_age=TOKEN_LIFETIME_SECONDS)
    except BadSignature:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("uid"), int):
        return None
    with svc.engine.connect() as conn:
        return get_user(conn, data["uid"])


def current_principal(request: Request) -> Principal | None:
    svc = services(request)
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        user = _user_from_token(svc, header[7:].strip())
        via_cookie = False
    elif request.cookies.get(SESSION_COOKIE):
        user = _user_from_token(svc, request.cookies[SESSION_COOKIE])
        via_cookie = True
    else:
        return None
    if user is None:
        return None
    return Principal(user, permissions_of(user.role), via_cookie)


def check_csrf(request: Request) -> None:
    """Cookie-authenticated writes must echo the CSRF cookie (double submit)."""
    sent = request.headers.get(CSRF_HEADER, "")
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie or not secrets.compare_digest(sent, cookie):
        raise APIError(403, "csrf_failed", "missing or wrong CSRF token")


def requires(permission: Permission) -> Any:
    """A dependency that admits only callers holding ``permission``."""

    def check(request: Request) -> Principal:
        principal = current_principal(request)
        if principal is None:
            raise APIError(401, "unauthenticated", "sign in or send a bearer token",
                           headers={"WWW-Authenticate": "Bearer"})
        if permission not in principal.permissions:
            raise APIError(403, "forbidden", f"this needs the permission '{permission}'")
        if principal.via_cookie and request.method not in ("GET", "HEAD", "OPTIONS"):
            check_csrf(request)
        return principal

    setattr(check, PERMISSION_ATTR, permission)
    return Depends(check)


def public() -> Any:
    def allow() -> None:
        return None

    setattr(allow, PERMISSION_ATTR, PUBLIC)
    return Depends(allow)


def device_dependency() -> Callable[[Request], str]:
    def device(request: Request) -> str:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("bearer "):
            raise APIError(401, "unauthenticated", "device credential required",
                           headers={"WWW-Authenticate": "Bearer"})
        svc = services(request)
        with svc.engine.connect() as conn:
            device_id = authenticate_device(conn, header[7:].strip())
        if device_id is None:
            raise APIError(401, "unauthenticated", "unknown, forged or revoked device credential")
        return device_id

    setattr(device, PERMISSION_ATTR, "device")
    return device


authenticated_device = Depends(device_dependency())
