"""API tokens: a user's own bearer tokens with scopes (a subset of their permissions) and an expiry, over the
tokens service."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from vigil.app import tokens as app_tokens
from vigil.app.ports import ApiTokenRecord
from vigil.server import app_edge as edge
from vigil.server.api._json import iso
from vigil.server.auth import Principal, services, signed_in

router = APIRouter()


class TokenInfo(BaseModel):
    id: int
    name: str
    scopes: list[str]
    createdAt: str | None
    expiresAt: str | None
    revoked: bool


class NewToken(TokenInfo):
    token: str = Field(description="The bearer secret, shown this once and never again.")


class TokenList(BaseModel):
    value: list[TokenInfo]


class Revoked(BaseModel):
    id: int
    revoked: bool


def token_info(t: ApiTokenRecord) -> TokenInfo:
    return TokenInfo(id=t.id, name=t.name, scopes=sorted(s.value for s in t.scopes), createdAt=iso(t.created_at),
                     expiresAt=iso(t.expires_at), revoked=t.revoked)


@router.get("/tokens")
def my_tokens(request: Request, _: Principal = signed_in()) -> TokenList:
    with edge.translated():
        return TokenList(value=[token_info(t) for t in app_tokens.mine(edge.store(request), edge.principal(request))])


class TokenBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128)
    scopes: list[str] = Field(min_length=1)
    expiresInDays: int = Field(default=30, ge=1, le=app_tokens.MAX_LIFETIME_DAYS)


@router.post("/tokens", status_code=201)
def create_token(body: TokenBody, request: Request, _: Principal = signed_in()) -> NewToken:
    with edge.translated():
        token, secret = app_tokens.create(edge.store(request), services(request).clock, edge.principal(request),
                                          name=body.name, scopes=body.scopes, days=body.expiresInDays)
    return NewToken(**token_info(token).model_dump(), token=secret)


@router.delete("/tokens/{token_id}")
def revoke_token(token_id: int, request: Request, _: Principal = signed_in()) -> Revoked:
    with edge.translated():
        app_tokens.revoke(edge.store(request), services(request).clock, edge.principal(request), token_id)
    return Revoked(id=token_id, revoked=True)
