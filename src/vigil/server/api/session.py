"""Sign-in for API callers, the caller's own identity, and the unauthenticated health check."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from vigil.server.auth import (
    TOKEN_LIFETIME_SECONDS,
    Principal,
    client_ip,
    end_session,
    issue_token,
    public,
    services,
    signed_in,
)
from vigil.server.errors import APIError
from vigil.server.services import Services
from vigil.store import audit
from vigil.store.audit import Change
from vigil.store.users import User, verify_login

router = APIRouter()


class LoginBody(BaseModel):
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)


def password_sign_in(svc: Services, username: str, password: str, ip: str | None) -> User:
    """Check a password under both throttles and audit the outcome; raises APIError when refused."""
    if svc.account_limiter.exhausted(username.lower()) or not svc.login_limiter.allow(ip or "?"):
        raise APIError(429, "rate_limited", "too many sign-in attempts; wait a minute", headers={"Retry-After": "60"})
    now = svc.clock.now()
    with svc.engine.begin() as conn:
        user = verify_login(conn, username, password)
        audit.append(conn, Change(username, "user.sign_in" if user else "user.sign_in_failed", "user", username,
                                  after={"method": "password"}, source_ip=ip), now)
    if user is None:
        svc.account_limiter.allow(username.lower())  # counts the failure
        raise APIError(401, "bad_credentials", "wrong user name or password")
    return user


@router.post("/auth/login")
def login(body: LoginBody, request: Request, _: None = public()) -> dict[str, Any]:
    svc = services(request)
    user = password_sign_in(svc, body.username, body.password, client_ip(request))
    token = issue_token(svc, user, client_ip(request))
    return {"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_LIFETIME_SECONDS}


@router.post("/auth/logout")
def logout(request: Request, _: Principal = signed_in()) -> dict[str, Any]:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        end_session(services(request), header[7:].strip())
    return {"status": "signed out"}


@router.get("/auth/me")
def me(request: Request, who: Principal = signed_in()) -> dict[str, Any]:
    groups = None if who.device_group_ids is None else sorted(who.device_group_ids)
    return {"username": who.user.username, "email": who.user.email, "source": who.user.source,
            "permissions": sorted(p.value for p in who.permissions), "deviceGroupIds": groups,
            "isAdministrator": who.is_admin, "apiTokenId": who.api_token_id}


@router.get("/health")
def health(request: Request, _: None = public()) -> dict[str, Any]:
    svc = services(request)
    with svc.engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    return {"status": "ok", "version": svc.version}
