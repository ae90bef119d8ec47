"""ASR rules and the what-if replay: GET /api/asr/rules, /api/asr/rules/{id} and /api/asr/rules/{id}/whatif."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from vigil.app import asr as asr_service
from vigil.app.stores import hunt_runner
from vigil.asr import AsrRule
from vigil.core.rbac import Permission
from vigil.server import app_edge as edge
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
