"""Sign-in for API callers, the caller's own identity, and the unauthenticated health check."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from vigil.core.mfa import MfaState
from vigil.server import app_edge as edge
from vigil.server.accounts import password_sign_in, record_sign_in, second_factor, sign_in_status
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

router = APIRouter()


class LoginBody(BaseModel):
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)
    # The second factor of an account with TOTP on: the app's current code, or one recovery code.
    totp: str = Field(default="", max_length=16)
    recoveryCode: str = Field(default="", max_length=64)


@router.post("/auth/login")
def login(body: LoginBody, request: Request, _: None = public()) -> dict[str, Any]:
    svc = services(request)
    ip = client_ip(request)
    user = password_sign_in(svc, body.username, body.password, ip)
    status = sign_in_status(svc, user)
    method = "password"
    if status.state is MfaState.OVERDUE:
        raise APIError(403, "mfa_enrollment_required", "your role requires a second factor and the grace period is "
                       "over: sign in to the portal to set up TOTP", field="totp")
    if status.state is MfaState.ENROLLED:
        if not body.totp and not body.recoveryCode:
            raise APIError(401, "mfa_required", "this account signs in with a TOTP code too: send the app's code "
                           "as 'totp' (or a recovery code as 'recoveryCode')", field="totp")
        method = second_factor(svc, user, ip, code=body.totp, recovery_code=body.recoveryCode)
    record_sign_in(svc, user, method, ip)
    token = issue_token(svc, user, ip)
    return {"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_LIFETIME_SECONDS,
            "mfa": status.state.value, "mfaDeadline": status.deadline.isoformat() if status.deadline else None}


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
    with edge.store(request).begin():  # a transaction opens only if the database answers
        pass
    return {"status": "ok", "version": svc.version}
