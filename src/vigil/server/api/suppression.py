"""Alert suppression rules: create, list, enable or disable, delete, over the suppression service.

A Device-scoped rule belongs to its device's group: callers scoped to other groups neither see nor change it (404),
as with the device itself; Organization-scoped rules name no device and are visible to every caller.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from vigil.app import suppression as app_suppression
from vigil.app.ports import SuppressionRecord
from vigil.core.rbac import Permission
from vigil.core.suppression import SuppressionAction, SuppressionScope
from vigil.server import app_edge as edge
from vigil.server.api._json import iso
from vigil.server.auth import Principal, requires, services

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


class SuppressionRuleInfo(BaseModel):
    id: int
    alertTitle: str
    scope: str
    action: str
    conditions: dict[str, str]
    machineId: str | None
    enabled: bool
    comment: str
    createdBy: str
    createdTime: str | None
    hits: int


class SuppressionRuleList(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    odata_context: str = Field(default="/api/$metadata#SuppressionRules", alias="@odata.context")
    value: list[SuppressionRuleInfo]


def rule_info(r: SuppressionRecord) -> SuppressionRuleInfo:
    return SuppressionRuleInfo(
        id=r.id, alertTitle=r.alert_title, scope=r.scope, action=r.action, conditions=r.conditions,
        machineId=r.machine_id, enabled=r.enabled, comment=r.comment, createdBy=r.created_by,
        createdTime=iso(r.created_at), hits=r.hits,
    )


@router.get("/suppressionRules", response_model=SuppressionRuleList)
def list_rules(request: Request, _: Principal = requires(Permission.VIEW_DATA_SECOPS)) -> SuppressionRuleList:
    with edge.translated():
        found = app_suppression.list_rules(edge.store(request), edge.principal(request))
    return SuppressionRuleList(value=[rule_info(r) for r in found])


@router.post("/suppressionRules", status_code=201, response_model=SuppressionRuleInfo)
def create_rule(
    body: RuleBody, request: Request, _: Principal = requires(Permission.MANAGE_SECURITY_SETTINGS)
) -> SuppressionRuleInfo:
    with edge.translated():
        made = app_suppression.create_rule(
            edge.store(request), services(request).clock, edge.principal(request), alert_title=body.alertTitle,
            scope=body.scope.value, action=body.action.value, conditions=body.conditions, machine_id=body.machineId,
            comment=body.comment,
        )
    return rule_info(made)


@router.patch("/suppressionRules/{rule_id}", response_model=SuppressionRuleInfo)
def enable_rule(
    rule_id: int, body: EnableBody, request: Request, _: Principal = requires(Permission.MANAGE_SECURITY_SETTINGS)
) -> SuppressionRuleInfo:
    with edge.translated():
        return rule_info(app_suppression.set_enabled(
            edge.store(request), services(request).clock, edge.principal(request), rule_id, body.enabled))


@router.delete("/suppressionRules/{rule_id}", status_code=204)
def delete_rule(
    rule_id: int, request: Request, _: Principal = requires(Permission.MANAGE_SECURITY_SETTINGS)
) -> None:
    with edge.translated():
        app_suppression.delete_rule(edge.store(request), services(request).clock, edge.principal(request), rule_id)
