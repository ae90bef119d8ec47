"""ASR rules, the what-if replay and policies per device group: GET /api/asr/rules, /api/asr/rules/{id},
/api/asr/rules/{id}/whatif; GET /api/asr/policies, GET/PUT /api/asr/policies/{group} and
PUT /api/asr/policies/{group}/rules/{id} (one rule's mode). The group "default" is the tenant default policy."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Query, Request
from pydantic import BaseModel, ConfigDict

from vigil.app import asr as asr_service
from vigil.app.errors import InvalidInput
from vigil.app.stores import hunt_runner
from vigil.asr import AsrMode, AsrRule
from vigil.core.rbac import Permission
from vigil.server import app_edge as edge
from vigil.server.api._json import iso
from vigil.server.auth import Principal, requires, services

router = APIRouter()


class AsrRuleInfo(BaseModel):
    id: str
    name: str
    title: str
    description: str
    technique: str
    table: str
    limits: str
    modes: dict[str, int] = {"Off": 0, "Block": 1, "Audit": 2, "Warn": 6}


class AsrRuleList(BaseModel):
    value: list[AsrRuleInfo]


class WhatIfHitInfo(BaseModel):
    deviceId: str
    deviceName: str
    process: str
    commandLine: str
    target: str
    count: int
    firstSeen: str
    lastSeen: str


class WhatIfInfo(BaseModel):
    ruleId: str
    ruleName: str
    days: int
    rowsScanned: int
    truncated: bool
    total: int
    hits: list[WhatIfHitInfo]


def _info(r: AsrRule) -> AsrRuleInfo:
    return AsrRuleInfo(id=r.guid, name=r.name, title=r.title, description=r.description, technique=r.technique,
                       table=r.table, limits=r.limits)


@router.get("/asr/rules", response_model=AsrRuleList)
def list_rules(request: Request, _: Principal = requires(Permission.VIEW_DATA_SECOPS)) -> AsrRuleList:
    with edge.translated():
        return AsrRuleList(value=[_info(r) for r in asr_service.rules(edge.principal(request))])


@router.get("/asr/rules/{rule_id}", response_model=AsrRuleInfo)
def get_rule(rule_id: str, request: Request, _: Principal = requires(Permission.VIEW_DATA_SECOPS)) -> AsrRuleInfo:
    with edge.translated():
        return _info(asr_service.rule(edge.principal(request), rule_id))


@router.get("/asr/rules/{rule_id}/whatif", response_model=WhatIfInfo)
def whatif(
    rule_id: str, request: Request, days: int = Query(7), _: Principal = requires(Permission.VIEW_DATA_SECOPS),
) -> WhatIfInfo:
    store = edge.store(request)
    with edge.translated():
        r = asr_service.whatif(store, hunt_runner(store), services(request).clock, edge.principal(request), rule_id,
                               days)
    return WhatIfInfo(
        ruleId=r.rule.guid, ruleName=r.rule.name, days=r.days, rowsScanned=r.rows_scanned, truncated=r.truncated,
        total=r.total, hits=[WhatIfHitInfo(deviceId=h.device_id, deviceName=h.device_name, process=h.process,
                                           commandLine=h.command_line, target=h.target, count=h.count,
                                           firstSeen=h.first_seen, lastSeen=h.last_seen) for h in r.hits],
    )


class AsrPolicyInfo(BaseModel):
    rbacGroupId: int | None
    rbacGroupName: str
    version: int
    lastUpdatedBy: str | None
    lastUpdateTime: str | None
    modes: dict[str, int]
    exclusions: list[dict[str, str]]
    ruleExclusions: dict[str, list[dict[str, str]]]
    devicesUpdated: int = 0


class AsrPolicyList(BaseModel):
    value: list[AsrPolicyInfo]


class ModeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: int | str


def _policy_info(v: asr_service.PolicyView) -> AsrPolicyInfo:
    data = v.policy.to_json()
    return AsrPolicyInfo(
        rbacGroupId=v.group_id, rbacGroupName=v.group_name, version=v.record.version if v.record else 0,
        lastUpdatedBy=v.record.updated_by if v.record else None,
        lastUpdateTime=iso(v.record.update_time) if v.record else None, modes=data["modes"],
        exclusions=data["exclusions"], ruleExclusions=data["ruleExclusions"], devicesUpdated=v.devices_updated,
    )


@router.get("/asr/policies", response_model=AsrPolicyList)
def list_policies(request: Request, _: Principal = requires(Permission.VIEW_DATA_SECOPS)) -> AsrPolicyList:
    with edge.translated():
        found = asr_service.policies(edge.store(request), services(request).clock, edge.principal(request))
    return AsrPolicyList(value=[_policy_info(v) for v in found])


@router.get("/asr/policies/{group}", response_model=AsrPolicyInfo)
def get_policy(group: str, request: Request, _: Principal = requires(Permission.VIEW_DATA_SECOPS)) -> AsrPolicyInfo:
    with edge.translated():
        return _policy_info(asr_service.policy(edge.store(request), services(request).clock, edge.principal(request),
                                               group))


@router.put("/asr/policies/{group}", response_model=AsrPolicyInfo)
def put_policy(
    group: str, request: Request,
    body: dict[str, Any] = Body(..., examples=[{"modes": {"ExecFromTempOrRemovable": "Audit"},
                                                "exclusions": [{"pattern": "/opt/build/*", "kind": "path"}],
                                                "ruleExclusions": {}}]),
    _: Principal = requires(Permission.MANAGE_SECURITY_SETTINGS),
) -> AsrPolicyInfo:
    """Replace the group's policy; rules by GUID or name, modes Off/Block/Audit/Warn or 0/1/2/6."""
    with edge.translated():
        return _policy_info(asr_service.set_policy(edge.store(request), services(request).clock,
                                                   edge.principal(request), group, asr_service.parse_policy(body)))


@router.put("/asr/policies/{group}/rules/{rule_id}", response_model=AsrPolicyInfo)
def put_rule_mode(group: str, rule_id: str, body: ModeBody, request: Request,
                  _: Principal = requires(Permission.MANAGE_SECURITY_SETTINGS)) -> AsrPolicyInfo:
    with edge.translated():
        try:
            mode = AsrMode.parse(body.mode)
        except ValueError as e:
            raise InvalidInput(str(e), field="mode") from None
        return _policy_info(asr_service.set_mode(edge.store(request), services(request).clock,
                                                 edge.principal(request), group, rule_id, mode))
