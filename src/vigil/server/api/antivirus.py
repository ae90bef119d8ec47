"""Antivirus (NGP) policies per device group: GET /api/antivirus/policies, GET/PUT /api/antivirus/policies/{group}
and PUT /api/antivirus/policies/{group}/mode (passive, block, audit, auto). The group "default" is the tenant
default; a policy's settings are vigil.av.policy's (docs/antivirus.md), a change is sent signed to the devices."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel, ConfigDict

from vigil.app import antivirus as av_service
from vigil.core.rbac import Permission
from vigil.server import app_edge as edge
from vigil.server.api._json import iso
from vigil.server.auth import Principal, requires, services

router = APIRouter()


class AvPolicyInfo(BaseModel):
    rbacGroupId: int | None
    rbacGroupName: str
    version: int
    lastUpdatedBy: str | None
    lastUpdateTime: str | None
    policy: dict[str, Any]  # the group's own settings
    effective: dict[str, Any]  # what its devices get: the tenant default merged in
    devicesUpdated: int = 0


class AvPolicyList(BaseModel):
    value: list[AvPolicyInfo]


class ModeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: str


def _info(v: av_service.PolicyView) -> AvPolicyInfo:
    return AvPolicyInfo(
        rbacGroupId=v.group_id, rbacGroupName=v.group_name, version=v.record.version if v.record else 0,
        lastUpdatedBy=v.record.updated_by if v.record else None,
        lastUpdateTime=iso(v.record.update_time) if v.record else None, policy=v.policy.as_dict(),
        effective=v.effective.as_dict(), devicesUpdated=v.devices_updated)


@router.get("/antivirus/policies", response_model=AvPolicyList)
def list_policies(request: Request, _: Principal = requires(Permission.VIEW_DATA_SECOPS)) -> AvPolicyList:
    with edge.translated():
        found = av_service.policies(edge.store(request), services(request).clock, edge.principal(request))
    return AvPolicyList(value=[_info(v) for v in found])


@router.get("/antivirus/policies/{group}", response_model=AvPolicyInfo)
def get_policy(group: str, request: Request, _: Principal = requires(Permission.VIEW_DATA_SECOPS)) -> AvPolicyInfo:
    with edge.translated():
        return _info(av_service.policy(edge.store(request), services(request).clock, edge.principal(request), group))


@router.put("/antivirus/policies/{group}", response_model=AvPolicyInfo)
def put_policy(
    group: str, request: Request,
    body: dict[str, Any] = Body(..., examples=[{"realtime": True, "mode": "passive", "pua_mode": "audit",
                                                "threat_actions": {"malware": "quarantine"},
                                                "exclusions": {"folder": ["/srv/backups"]}}]),
    _: Principal = requires(Permission.MANAGE_SECURITY_SETTINGS),
) -> AvPolicyInfo:
    """Replace the group's antivirus policy."""
    with edge.translated():
        return _info(av_service.set_policy(edge.store(request), services(request).clock, edge.principal(request),
                                           group, body))


@router.put("/antivirus/policies/{group}/mode", response_model=AvPolicyInfo)
def put_mode(group: str, body: ModeBody, request: Request,
             _: Principal = requires(Permission.MANAGE_SECURITY_SETTINGS)) -> AvPolicyInfo:
    """Switch the group's antivirus passive (beside another antivirus) or active (block), keeping the rest."""
    with edge.translated():
        return _info(av_service.set_mode(edge.store(request), services(request).clock, edge.principal(request),
                                         group, body.mode))
