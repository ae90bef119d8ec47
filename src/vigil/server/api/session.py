"""Sign-in for API callers, and the unauthenticated health check."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from vigil.server.auth import issue_token, public, services
from vigil.server.errors import APIError
from vigil.store.users import verify_login

router = APIRouter()


class LoginBody(BaseModel):
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)


@router.post("/auth/login")
def login(body: LoginBody, request: Request, _: None = public()) -> dict[str, Any]:
    svc = services(request)
    if not svc.login_limiter.allow(request.client.host if request.client else "?"):
        raise APIError(429, "rate_limited", "too many sign-in attempts; wait a minute",
                       headers={"Retry-After": "60"})
    with svc.engine.connect() as conn:
        user = verify_login(conn, body.username, body.password)
    if user is None:
        raise APIError(401, "bad_credentials", "wrong user name or password")
    return {"access_token": issue_token(svc, user), "token_type": "Bearer", "expires_in": 12 * 3600}


@router.get("/health")
def health(request: Request, _: None = public()) -> dict[str, Any]:
    svc = services(request)
    with svc.engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    return {"status": "ok", "version": svc.version}
