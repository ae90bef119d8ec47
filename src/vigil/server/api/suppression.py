"""Alert suppression rules: create, list, enable or disable, delete.

A Device-scoped rule belongs to its device's group: callers scoped to other groups neither see nor change it (404),
as with the device itself; Organization-scoped rules name no device and are visible to every caller.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from vigil.core.rbac import Permission
from vigil.core.suppression import SuppressionAction, SuppressionError, SuppressionScope
from vigil.server.api._json import iso
from vigil.server.auth import Principal, requires, services
from vigil.server.errors import APIError
from vigil.server.scope import principal_of, visible_device_ids
from vigil.store import suppression as store

router = APIRouter()


class RuleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alertTitle: str = Field(min_length=1, max_length=512)
    scope: SuppressionScope = SuppressionScope.ORGANIZATION
    action: SuppressionAction = SuppressionAction.HIDE
    conditions: dict[str, str] = Field(default_factory=dict)
    machineId: str | None = Field(default=None, max_length=40)
    comment: str = Field(min_length=1, max_length=2000)


class EnableBody(BaseModel):
    enabled: bool


def _json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id, "alertTitle": row.alert_title, "scope": row.scope, "action": row.action,
        "conditions": row.conditions, "machineId": row.machine_id, "enabled": row.enabled,
        "comment": row.comment, "createdBy": row.created_by, "createdTime": iso(row.created_at), "hits": row.hits,
    }


def _visible_rules(request: Request, conn: Any) -> list[Any]:
    devices = visible_device_ids(conn, principal_of(request))
    return [r for r in store.listing(conn) if devices is None or r.machine_id is None or r.machine_id in devices]


def _visible_rule(request: Request, conn: Any, rule_id: int) -> Any:
    row = next((r for r in _visible_rules(request, conn) if r.id == rule_id), None)
    if row is None:
        raise APIError(404, "not_found", f"no suppression rule {rule_id}", field="id")
    return row


@router.get("/suppressionRules")
def list_rules(request: Request, _: Principal = requires(Permission.VIEW_DATA_SECOPS)) -> dict[str, Any]:
    with services(request).engine.connect() as conn:
        return {"value": [_json(r) for r in _visible_rules(request, conn)]}


@router.post("/suppressionRules", status_code=201)
def create_rule(
    body: RuleBody, request: Request, who: Principal = requires(Permission.MANAGE_SECURITY_SETTINGS)
) -> dict[str, Any]:
    if body.scope is SuppressionScope.DEVICE and not body.machineId:
        raise APIError(422, "invalid_request", "machineId: a Device-scoped rule names its device", field="machineId")
    svc = services(request)
    try:
        with svc.engine.begin() as conn:
            devices = visible_device_ids(conn, who)
            if body.scope is SuppressionScope.DEVICE and devices is not None and body.machineId not in devices:
                raise APIError(404, "not_found", f"no machine with id {body.machineId!r}", field="machineId")
            rule_id = store.create(
                conn, title=body.alertTitle, scope=body.scope, action=body.action, conditions=body.conditions,
                machine_id=body.machineId if body.scope is SuppressionScope.DEVICE else None,
                comment=body.comment, who=who.user.username, now=svc.clock.now(),
            )
            row = next(r for r in store.listing(conn) if r.id == rule_id)
    except SuppressionError as e:
        raise APIError(422, "invalid_request", str(e), field=e.field) from None
    return _json(row)


@router.patch("/suppressionRules/{rule_id}")
def enable_rule(
    rule_id: int, body: EnableBody, request: Request, _: Principal = requires(Permission.MANAGE_SECURITY_SETTINGS)
) -> dict[str, Any]:
    with services(request).engine.begin() as conn:
        _visible_rule(request, conn, rule_id)
        store.set_enabled(conn, rule_id, body.enabled)
        return _json(_visible_rule(request, conn, rule_id))


@router.delete("/suppressionRules/{rule_id}", status_code=204)
def delete_rule(
    rule_id: int, request: Request, _: Principal = requires(Permission.MANAGE_SECURITY_SETTINGS)
) -> None:
    with services(request).engine.begin() as conn:
        _visible_rule(request, conn, rule_id)
        store.delete(conn, rule_id)
