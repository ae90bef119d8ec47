"""OAuth2 client credentials: application registrations under /api/applications, and the token endpoint.

The token endpoint sits where Defender scripts post to Entra ID, ``/oauth2/v2.0/token`` (with or without a
tenant segment before it), takes the form-encoded client-credentials grant and answers in RFC 6749's shapes.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import parse_qs, unquote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from vigil.app import applications as svc_apps
from vigil.app.stores import application_store
from vigil.core.app_roles import APP_ROLES
from vigil.server import app_edge as edge
from vigil.server.api._json import iso
from vigil.server.auth import Principal, client_ip, public, requires, services

router = APIRouter()
token_router = APIRouter(tags=["oauth2"])
MAX_FORM_BYTES = 8192


class ApplicationInfo(BaseModel):
    id: int
    name: str
    clientId: str
    roles: list[str]
    createdBy: str
    createdAt: str | None
    secretExpiresAt: str | None
    lastTokenAt: str | None
    revoked: bool


class NewApplication(ApplicationInfo):
    clientSecret: str = Field(description="Shown once; Vigil keeps only its hash.")


class ApplicationList(BaseModel):
    value: list[ApplicationInfo]
    availableRoles: list[str]


def info(a: svc_apps.Application) -> ApplicationInfo:
    return ApplicationInfo(id=a.id, name=a.name, clientId=a.client_id, roles=sorted(a.roles), createdBy=a.created_by,
                           createdAt=iso(a.created_at), secretExpiresAt=iso(a.secret_expires_at),
                           lastTokenAt=iso(a.last_token_at), revoked=a.revoked_at is not None)


class ApplicationBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128)
    roles: list[str] = Field(min_length=1, description="Defender's application permission names")
    secretExpiresInDays: int = Field(default=365, ge=1, le=svc_apps.MAX_SECRET_DAYS)


def _store(request: Request) -> svc_apps.ApplicationStore:
    return application_store(services(request).engine)  # type: ignore[no-any-return]


@router.get("/applications", response_model=ApplicationList)
def list_apps(request: Request, _: Principal = requires(svc_apps.MANAGE)) -> ApplicationList:
    with edge.translated():
        found = svc_apps.list_applications(_store(request), edge.principal(request))
    return ApplicationList(value=[info(a) for a in found], availableRoles=list(APP_ROLES))


@router.post("/applications", status_code=201, response_model=NewApplication)
def register_app(body: ApplicationBody, request: Request, _: Principal = requires(svc_apps.MANAGE)) -> NewApplication:
    with edge.translated():
        done = svc_apps.register(_store(request), services(request).clock, edge.principal(request), body.name,
                                 body.roles, body.secretExpiresInDays)
    return NewApplication(**info(done.app).model_dump(), clientSecret=done.client_secret)


@router.delete("/applications/{app_id}", response_model=ApplicationInfo)
def revoke_app(app_id: int, request: Request, _: Principal = requires(svc_apps.MANAGE)) -> ApplicationInfo:
    with edge.translated():
        return info(svc_apps.revoke(_store(request), services(request).clock, edge.principal(request), app_id))


def _oauth_error(status: int, error: str, description: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status,
                        headers={"Cache-Control": "no-store", **(headers or {})})


def _basic_credentials(header: str) -> tuple[str, str] | None:
    """RFC 6749 2.3.1: client id and secret in HTTP Basic, each form-urlencoded."""
    if not header.lower().startswith("basic "):
        return None
    try:
        pair = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    cid, sep, secret = pair.partition(":")
    return (unquote(cid), unquote(secret)) if sep else None


async def _token(request: Request) -> JSONResponse:
    svc = services(request)
    ip = client_ip(request) or "unknown"
    key = f"oauth2:{ip}"
    if svc.login_limiter.exhausted(key):
        return _oauth_error(429, "slow_down", "too many failed token requests from this address; retry later",
                            {"Retry-After": "60"})
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return _oauth_error(400, "invalid_request", "the body must be application/x-www-form-urlencoded")
    raw = await request.body()
    if len(raw) > MAX_FORM_BYTES:
        return _oauth_error(400, "invalid_request", f"the body is over {MAX_FORM_BYTES} bytes")
    try:
        form = parse_qs(raw.decode(), strict_parsing=bool(raw), max_num_fields=16)
    except (UnicodeDecodeError, ValueError) as e:
        return _oauth_error(400, "invalid_request", f"the body is not a form: {e}")
    repeated = sorted(k for k, v in form.items() if len(v) > 1)
    if repeated:
        return _oauth_error(400, "invalid_request", f"{repeated[0]}: given more than once")
    field = {k: v[0] for k, v in form.items()}
    basic = _basic_credentials(request.headers.get("authorization", ""))
    cid, secret = basic if basic else (field.get("client_id", ""), field.get("client_secret", ""))
    for name, value in (("grant_type", field.get("grant_type", "")), ("client_id", cid), ("client_secret", secret)):
        if not value:
            return _oauth_error(400, "invalid_request", f"{name}: missing")
    try:
        issued = svc_apps.issue_token(_store(request), svc.clock, field["grant_type"], cid, secret,
                                      field.get("scope", ""), ip)
    except svc_apps.TokenRefused as e:
        if e.error == "invalid_client":
            svc.login_limiter.allow(key)
        headers = {"WWW-Authenticate": "Basic"} if e.status == 401 else None
        return _oauth_error(e.status, e.error, e.description, headers)
    body: dict[str, Any] = {"token_type": "Bearer", "expires_in": issued.expires_in,
                            "ext_expires_in": issued.expires_in, "access_token": issued.access_token,
                            "scope": " ".join(sorted(issued.roles))}
    return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


@token_router.post("/oauth2/v2.0/token", response_model=None)
async def token(request: Request, _: None = public()) -> JSONResponse:
    return await _token(request)


@token_router.post("/{tenant}/oauth2/v2.0/token", response_model=None)
async def tenant_token(tenant: str, request: Request, _: None = public()) -> JSONResponse:
    """Scripts written for Entra ID put the tenant id first; Vigil has one tenant and ignores it."""
    return await _token(request)
