"""Who is calling: analysts by session cookie, session token or API token; devices by their credential.

Each route declares the permission it needs with ``requires(...)`` right where it is defined; the
route walker test reads ``PERMISSION_ATTR`` off the dependency to prove every route is guarded.
The guard also leaves the caller on ``request.state.principal``, which the scope helpers read.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fastapi import Depends, Request
from itsdangerous import BadSignature, URLSafeTimedSerializer

from vigil.app import applications
from vigil.app.stores import application_store
from vigil.core.mfa import MfaState
from vigil.core.rbac import Access, BasicRole, Permission
from vigil.server.errors import APIError
from vigil.server.services import Services
from vigil.store import sessions as session_store
from vigil.store.devices import authenticate_device
from vigil.store.mfa import mfa_status
from vigil.store.rbac import access_for
from vigil.store.users import User, get_user

SESSION_COOKIE = "vigil_session"
CSRF_COOKIE = "vigil_csrf"
CSRF_HEADER = "x-csrf-token"
TOKEN_LIFETIME_SECONDS = 12 * 3600
PERMISSION_ATTR = "vigil_permission"
PUBLIC = "public"  # marks routes that deliberately need no sign-in (health, login)
SIGNED_IN = "signed-in"  # marks self-service routes any signed-in user may call (own API tokens)


@dataclass(frozen=True)
class Principal:
    user: User
    permissions: frozenset[Permission]
    via_cookie: bool
    # Device groups the caller may see; None means every group.
    device_group_ids: frozenset[int] | None = None
    is_admin: bool = False
    api_token_id: int | None = None
    # Set for an OAuth2 application's access token; ``user`` is then a stand-in named "app:<name>".
    app_id: int | None = None


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def client_ip(request: Request) -> str | None:
    """The caller's address for rate limits and audit records.

    ``request.client`` is the TCP peer unless that peer is a configured trusted proxy, in which case
    ``server/proxies.py`` has already replaced it with the address the proxy reported.
    """
    return request.client.host if request.client else None


def _serializer(svc: Services) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(svc.secret_key, salt="vigil-session")


def issue_token(svc: Services, user: User, ip: str | None = None) -> str:
    """A new server-side session for ``user``, as a signed token; each sign-in gets a fresh one."""
    now = svc.clock.now()
    with svc.engine.begin() as conn:
        sid = session_store.open_session(conn, user.id, now, now + timedelta(seconds=TOKEN_LIFETIME_SECONDS), ip)
    return _serializer(svc).dumps({"sid": sid})


def _session_id(svc: Services, token: str) -> str | None:
    try:
        data = _serializer(svc).loads(token, max_age=TOKEN_LIFETIME_SECONDS)
    except BadSignature:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("sid"), str):
        return None
    return str(data["sid"])


def end_session(svc: Services, token: str) -> None:
    sid = _session_id(svc, token)
    if sid:
        with svc.engine.begin() as conn:
            session_store.close_session(conn, sid, svc.clock.now())


def _app_principal(svc: Services, token: str) -> Principal | None:
    found = applications.caller(application_store(svc.engine), svc.clock, token)
    if found is None:
        return None
    stand_in = User(0, f"app:{found.app.name}", BasicRole.READ_ONLY)
    return Principal(stand_in, found.permissions, False, None, False, app_id=found.app.id)


def _principal(svc: Services, token: str, via_cookie: bool) -> Principal | None:
    if token.startswith(applications.TOKEN_PREFIX):
        return None if via_cookie else _app_principal(svc, token)
    now = svc.clock.now()
    scopes: frozenset[Permission] | None = None
    token_id = None
    with svc.engine.begin() as conn:
        if token.startswith(session_store.API_TOKEN_PREFIX) and not via_cookie:
            api = session_store.api_token_by_secret(conn, token, now)
            if api is None:
                return None
            user_id: int | None = api.user_id
            scopes, token_id = api.scopes, api.id
        else:
            sid = _session_id(svc, token)
            user_id = session_store.session_user(conn, sid, now) if sid else None
        user = get_user(conn, user_id) if user_id is not None else None
        if user is None:
            return None
        # A session opened during the MFA grace period ends with it: past the deadline only enrolment opens.
        if scopes is None and svc.mfa_policy.required_roles and (
                mfa_status(conn, user, svc.mfa_policy, now).state is MfaState.OVERDUE):
            return None
        access: Access = access_for(conn, user, now)
    is_admin = access.device_group_ids is None and access.permissions == frozenset(Permission)
    if scopes is not None:
        access = access.restricted_to(scopes)
    return Principal(user, access.permissions, via_cookie, access.device_group_ids, is_admin, token_id)


def current_principal(request: Request) -> Principal | None:
    svc = services(request)
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return _principal(svc, header[7:].strip(), via_cookie=False)
    if request.cookies.get(SESSION_COOKIE):
        return _principal(svc, request.cookies[SESSION_COOKIE], via_cookie=True)
    return None


def check_csrf(request: Request) -> None:
    """Cookie-authenticated writes must echo the CSRF cookie (double submit)."""
    sent = request.headers.get(CSRF_HEADER, "")
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie or not secrets.compare_digest(sent, cookie):
        raise APIError(403, "csrf_failed", "missing or wrong CSRF token")


def _guard(permission: Permission | None) -> Callable[[Request], Principal]:
    def check(request: Request) -> Principal:
        principal = current_principal(request)
        if principal is None:
            raise APIError(401, "unauthenticated", "sign in or send a bearer token",
                           headers={"WWW-Authenticate": "Bearer"})
        if permission is None and principal.app_id is not None:
            raise APIError(403, "forbidden", "an application token cannot use a user's self-service routes")
        if permission is not None and permission not in principal.permissions:
            raise APIError(403, "forbidden", f"this needs the permission '{permission}'")
        if principal.via_cookie and request.method not in ("GET", "HEAD", "OPTIONS"):
            check_csrf(request)
        request.state.principal = principal
        return principal

    setattr(check, PERMISSION_ATTR, permission or SIGNED_IN)
    return check


def requires(permission: Permission) -> Any:
    """A dependency that admits only callers holding ``permission``."""
    return Depends(_guard(permission))


def signed_in() -> Any:
    """Any signed-in caller; for self-service routes such as a user's own API tokens."""
    return Depends(_guard(None))


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
