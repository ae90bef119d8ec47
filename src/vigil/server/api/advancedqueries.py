"""Advanced hunting: Defender's ``POST /api/advancedqueries/run`` over the hunting service."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from vigil.app import hunting
from vigil.app.errors import AppError
from vigil.app.stores import hunt_runner
from vigil.core.rbac import Permission
from vigil.server import app_edge as edge
from vigil.server.auth import Principal, requires, services
from vigil.server.errors import APIError

router = APIRouter()


class HuntQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    Query: str = Field(min_length=1, max_length=30_000)


class SchemaColumn(BaseModel):
    Name: str
    Type: str


class HuntResponse(BaseModel):
    Schema: list[SchemaColumn]
    Results: list[dict[str, Any]]


@router.post("/advancedqueries/run", response_model=HuntResponse)
def run_query(
    body: HuntQuery, request: Request, _: Principal = requires(Permission.VIEW_DATA_SECOPS),
) -> HuntResponse:
    store = edge.store(request)
    try:
        result = hunting.run_query(store, hunt_runner(store), services(request).clock, edge.principal(request),
                                   body.Query)
    except hunting.TooManyQueries as e:
        raise APIError(429, "too_many_requests", e.message, field=e.field) from None
    except AppError as e:
        raise edge.http_error(e) from None
    return HuntResponse(Schema=[SchemaColumn(**c) for c in result.schema], Results=result.results)
