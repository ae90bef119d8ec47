"""Streaming export destinations: create, list with their health, enable/disable, delete (manage security settings)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from vigil.app import streaming as svc_stream
from vigil.app.stores import destination_store
from vigil.integrations.stream import Catalogue
from vigil.server import app_edge as edge
from vigil.server.api._json import iso
from vigil.server.auth import Principal, requires, services

router = APIRouter()
CATALOGUE = Catalogue()


class DestinationInfo(BaseModel):
    id: int
    name: str
    type: str
    tables: list[str]
    enabled: bool
    settings: dict[str, Any] = Field(description="Secret settings are shown as ********")
    createdBy: str
    createdAt: str | None
    lag: int = Field(description="Stored batches not yet delivered")
    cursor: int
    recordsSent: int
    recordsFailed: int
    attempts: int
    lastError: str | None
    lastErrorTime: str | None
    lastSentTime: str | None
    nextAttemptTime: str | None


class DestinationList(BaseModel):
    value: list[DestinationInfo]
    types: list[str]
    tables: list[str]


def info(h: svc_stream.Health) -> DestinationInfo:
    d = h.destination
    return DestinationInfo(
        id=d.id, name=d.name, type=d.kind, tables=list(d.tables), enabled=d.enabled, settings=dict(h.settings),
        createdBy=d.created_by, createdAt=iso(d.created_at), lag=h.lag, cursor=d.cursor, recordsSent=d.sent,
        recordsFailed=d.failed, attempts=d.attempts, lastError=d.last_error, lastErrorTime=iso(d.last_error_at),
        lastSentTime=iso(d.last_sent_at), nextAttemptTime=iso(d.next_attempt_at),
    )


class DestinationBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128)
    type: str = Field(description="webhook, syslog, splunk_hec, elasticsearch or file")
    settings: dict[str, Any] = Field(default_factory=dict)
    tables: list[str] = Field(min_length=1, description="Telemetry tables and AlertInfo")
    enabled: bool = True


class EnabledBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool


def _store(request: Request) -> svc_stream.DestinationStore:
    return destination_store(services(request).engine)  # type: ignore[no-any-return]


@router.get("/streaming/destinations", response_model=DestinationList)
def list_destinations(request: Request, _: Principal = requires(svc_stream.MANAGE)) -> DestinationList:
    with edge.translated():
        found = svc_stream.listing(_store(request), edge.principal(request), CATALOGUE)
    return DestinationList(value=[info(h) for h in found], types=list(CATALOGUE.kinds()),
                           tables=list(svc_stream.exportable_tables()))


@router.post("/streaming/destinations", status_code=201, response_model=DestinationInfo)
def create_destination(body: DestinationBody, request: Request,
                       _: Principal = requires(svc_stream.MANAGE)) -> DestinationInfo:
    with edge.translated():
        return info(svc_stream.create(_store(request), services(request).clock, edge.principal(request), CATALOGUE,
                                      body.name, body.type, body.settings, body.tables, body.enabled))


@router.patch("/streaming/destinations/{ref}", response_model=DestinationInfo)
def enable_destination(ref: str, body: EnabledBody, request: Request,
                       _: Principal = requires(svc_stream.MANAGE)) -> DestinationInfo:
    with edge.translated():
        return info(svc_stream.set_enabled(_store(request), services(request).clock, edge.principal(request),
                                           CATALOGUE, ref, body.enabled))


@router.delete("/streaming/destinations/{ref}", status_code=204)
def delete_destination(ref: str, request: Request, _: Principal = requires(svc_stream.MANAGE)) -> None:
    with edge.translated():
        svc_stream.delete(_store(request), services(request).clock, edge.principal(request), CATALOGUE, ref)
