"""Windows event sources: the shippers allowed to post to /ingest/v1/windows, each with its own secret."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from vigil.app import shippers
from vigil.app.stores import source_store
from vigil.server import app_edge as edge
from vigil.server.api._json import iso
from vigil.server.auth import Principal, requires, services

router = APIRouter()


class SourceInfo(BaseModel):
    id: int
    name: str
    createdBy: str
    createdAt: str | None
    lastSeenTime: str | None
    events: int
    revoked: bool


class NewSource(SourceInfo):
    secret: str = Field(description="Shown once; the shipper sends it as a bearer token (or Winlogbeat's api_key)")


class SourceList(BaseModel):
    value: list[SourceInfo]


class SourceBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128)


def info(s: shippers.Source) -> SourceInfo:
    return SourceInfo(id=s.id, name=s.name, createdBy=s.created_by, createdAt=iso(s.created_at),
                      lastSeenTime=iso(s.last_seen_at), events=s.events, revoked=s.revoked_at is not None)


def _store(request: Request) -> shippers.SourceStore:
    return source_store(services(request).engine)  # type: ignore[no-any-return]


@router.get("/ingest/sources", response_model=SourceList)
def list_sources(request: Request, _: Principal = requires(shippers.MANAGE)) -> SourceList:
    with edge.translated():
        return SourceList(value=[info(s) for s in shippers.listing(_store(request), edge.principal(request))])


@router.post("/ingest/sources", status_code=201, response_model=NewSource)
def create_source(body: SourceBody, request: Request, _: Principal = requires(shippers.MANAGE)) -> NewSource:
    with edge.translated():
        source, secret = shippers.register(_store(request), services(request).clock, edge.principal(request),
                                           body.name)
    return NewSource(**info(source).model_dump(), secret=secret)


@router.delete("/ingest/sources/{source_id}", response_model=SourceInfo)
def revoke_source(source_id: int, request: Request, _: Principal = requires(shippers.MANAGE)) -> SourceInfo:
    with edge.translated():
        return info(shippers.revoke(_store(request), services(request).clock, edge.principal(request), source_id))
