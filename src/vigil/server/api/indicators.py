"""Indicators with Defender's paths and fields: GET (OData options) and POST /api/indicators, GET/DELETE
/api/indicators/{id}, POST /api/indicators/import (per-row results)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from vigil.app import indicators as app_indicators
from vigil.core.rbac import Permission
from vigil.server import app_edge as edge
from vigil.server.api import _odata as odata
from vigil.server.api._json import iso
from vigil.server.auth import Principal, requires, services

router = APIRouter()

_SUBMIT_EXAMPLE = {"indicatorValue": "1.2.3.4", "indicatorType": "IpAddress", "action": "Block",
                   "title": "C2 server", "description": "", "severity": "High",
                   "expirationTime": "2027-01-01T00:00:00Z", "rbacGroupNames": ["Ring – Pilot"], "generateAlert": True}


class IndicatorInfo(BaseModel):
    id: str
    indicatorValue: str
    indicatorType: str
    action: str
    title: str
    description: str
    severity: str
    recommendedActions: str
    expirationTime: str | None
    rbacGroupIds: list[int]
    rbacGroupNames: list[str]
    generateAlert: bool
    createdBy: str
    creationTimeDateTimeUtc: str | None
    lastUpdatedBy: str
    lastUpdateTime: str | None
    sourceType: str = "User"


class IndicatorList(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    odata_context: str = Field(default="/api/$metadata#Indicators", alias="@odata.context")
    value: list[IndicatorInfo]


class ImportBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    Indicators: list[Any] = Field(max_length=app_indicators.MAX_BATCH)


class ImportRowInfo(BaseModel):
    id: str | None
    indicator: str
    isFailed: bool
    failureReason: str | None


class ImportResult(BaseModel):
    value: list[ImportRowInfo]


def indicator_info(item: app_indicators.Listed) -> IndicatorInfo:
    r, ind = item.record, item.record.indicator
    return IndicatorInfo(
        id=str(ind.id), indicatorValue=ind.indicator_value, indicatorType=ind.indicator_type.value,
        action=ind.action.value, title=ind.title, description=ind.description, severity=ind.severity,
        recommendedActions=ind.extra.get("RecommendedActions", ""), expirationTime=iso(ind.expiration_time),
        rbacGroupIds=list(ind.rbac_group_ids), rbacGroupNames=list(item.group_names),
        generateAlert=ind.generate_alert, createdBy=r.created_by, creationTimeDateTimeUtc=iso(r.creation_time),
        lastUpdatedBy=r.last_updated_by, lastUpdateTime=iso(r.last_update_time),
    )


@router.get("/indicators", response_model=IndicatorList)
def list_indicators(request: Request, q: odata.ODataQuery = odata.options(),
                    _: Principal = requires(Permission.VIEW_DATA_SECOPS)) -> Any:
    """The indicators the caller sees, with OData's $filter, $orderby, $skip, $top and $select."""
    with edge.translated():
        found = app_indicators.list_indicators(edge.store(request), edge.principal(request))
    return odata.respond(q, [indicator_info(i) for i in found], IndicatorInfo, "/api/$metadata#Indicators")


@router.get("/indicators/{indicator_id}", response_model=IndicatorInfo)
def get_indicator(indicator_id: int, request: Request, _: Principal = requires(Permission.VIEW_DATA_SECOPS)
                  ) -> IndicatorInfo:
    with edge.translated():
        return indicator_info(app_indicators.get_indicator(edge.store(request), edge.principal(request),
                                                           indicator_id))


def _changed(request: Request) -> None:
    """Ingest matches telemetry against the new indicators from the next batch on, not after its cache's TTL."""
    cache = getattr(request.app.state, "protection_alerts", None)
    if cache is not None:
        cache.invalidate()


@router.post("/indicators", response_model=IndicatorInfo)
def submit_indicator(
    request: Request, response: Response,
    body: dict[str, Any] = Body(..., examples=[_SUBMIT_EXAMPLE]),
    _: Principal = requires(Permission.MANAGE_SECURITY_SETTINGS),
) -> IndicatorInfo:
    """Submit or update: an indicator of the same type and value is replaced (200), a new one made (201)."""
    with edge.translated():
        item, created = app_indicators.submit(edge.store(request), services(request).clock, edge.principal(request),
                                              body)
    response.status_code = 201 if created else 200
    _changed(request)
    return indicator_info(item)


@router.post("/indicators/import", response_model=ImportResult)
def import_indicators(body: ImportBody, request: Request,
                      _: Principal = requires(Permission.MANAGE_SECURITY_SETTINGS)) -> ImportResult:
    with edge.translated():
        results = app_indicators.import_rows(edge.store(request), services(request).clock, edge.principal(request),
                                             body.Indicators)
    _changed(request)
    return ImportResult(value=[
        ImportRowInfo(id=str(r.record.record.indicator.id) if r.record else None, indicator=r.value,
                      isFailed=r.record is None, failureReason=r.error or None) for r in results])


@router.delete("/indicators/{indicator_id}", status_code=204)
def delete_indicator(indicator_id: int, request: Request,
                     _: Principal = requires(Permission.MANAGE_SECURITY_SETTINGS)) -> None:
    with edge.translated():
        app_indicators.delete(edge.store(request), services(request).clock, edge.principal(request), indicator_id)
    _changed(request)
