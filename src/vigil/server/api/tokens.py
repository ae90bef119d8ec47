"""API tokens: a user's own bearer tokens with scopes (a subset of their permissions) and an expiry."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from vigil.core.rbac import Permission, UnknownPermission, parse_permissions
from vigil.server.api._json import iso
from vigil.server.auth import Principal, services, signed_in
from vigil.server.errors import APIError
from vigil.server.scope import change
from vigil.store import audit
from vigil.store import sessions as session_store

router = APIRouter()
MAX_LIFETIME_DAYS = 365


def _json(t: session_store.ApiToken) -> dict[str, Any]:
    return {"id": t.id, "name": t.name, "scopes": sorted(s.value for s in t.scopes), "createdAt": iso(t.created_at),
            "expiresAt": iso(t.expires_at), "revoked": t.revoked}


@router.get("/tokens")
def my_tokens(request: Request, who: Principal = signed_in()) -> dict[str, Any]:
    with services(request).engine.connect() as conn:
        return {"value": [_json(t) for t in session_store.list_api_tokens(conn, who.user.id)]}


class TokenBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128)
    scopes: list[str] = Field(min_length=1)
    expiresInDays: int = Field(default=30, ge=1, le=MAX_LIFETIME_DAYS)


@router.post("/tokens", status_code=201)
def create_token(body: TokenBody, request: Request, who: Principal = signed_in()) -> dict[str, Any]:
    if who.api_token_id is not None:
        raise APIError(403, "forbidden", "an API token cannot mint other tokens; sign in")
    try:
        scopes = parse_permissions(body.scopes, "scopes")
    except UnknownPermission as e:
        raise APIError(422, "invalid_request", str(e), field=e.where) from None
    beyond = scopes - who.permissions
    if beyond:
        raise APIError(403, "forbidden", f"you do not hold {', '.join(sorted(beyond))}", field="scopes")
    svc = services(request)
    now = svc.clock.now()
    with svc.engine.begin() as conn:
        token, secret = session_store.create_api_token(
            conn, user_id=who.user.id, name=body.name, scopes=frozenset(scopes),
            expires_at=now + timedelta(days=body.expiresInDays), now=now,
        )
        audit.append(conn, change(request, "api_token.create", "api_token", str(token.id), after=_json(token)), now)
    return {**_json(token), "token": secret}


@router.delete("/tokens/{token_id}")
def revoke_token(token_id: int, request: Request, who: Principal = signed_in()) -> dict[str, Any]:
    svc = services(request)
    now = svc.clock.now()
    mine_only = None if Permission.MANAGE_PORTAL_SETTINGS in who.permissions else who.user.id
    with svc.engine.begin() as conn:
        if not session_store.revoke_api_token(conn, token_id, now, mine_only):
            raise APIError(404, "not_found", f"no live token {token_id} of yours", field="id")
        audit.append(conn, change(request, "api_token.revoke", "api_token", str(token_id)), now)
    return {"id": token_id, "revoked": True}
