"""Device groups (Defender's machine groups): rules, ranks, automation level, user-group access."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from vigil.core.groups import AutomationLevel, GroupRuleError
from vigil.core.rbac import Permission
from vigil.server.agent_api import queue_current_protection
from vigil.server.auth import Principal, requires, services
from vigil.server.errors import APIError
from vigil.server.scope import change, visible_group_ids
from vigil.store import audit
from vigil.store import groups as group_store
from vigil.store.rbac import RbacError

router = APIRouter()


@router.get("/machinegroups")
def machine_groups(request: Request, who: Principal = requires(Permission.VIEW_DATA_SECOPS)) -> dict[str, Any]:
    svc = services(request)
    visible = visible_group_ids(who)
    with svc.engine.connect() as conn:
        rows = group_store.list_groups(conn)
    return {"value": [g.as_json() for g in rows if visible is None or g.id in visible]}


class GroupBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str | None = Field(default=None, max_length=1000)
    rules: list[dict[str, Any]] | None = None
    automationLevel: AutomationLevel | None = None
    userGroups: list[str] | None = None
    # Off by default: a device's own report of a new name, OS or tags waits for an administrator.
    trustReportedIdentity: bool | None = None


@router.put("/machinegroups/{name}")
def put_group(
    name: str, body: GroupBody, request: Request, _: Principal = requires(Permission.MANAGE_PORTAL_SETTINGS)
) -> dict[str, Any]:
    svc = services(request)
    now = svc.clock.now()
    try:
        with svc.engine.begin() as conn:
            before = group_store.get_group(conn, name)
            _gid, moves = group_store.put_group(conn, name, now=now, description=body.description, rules=body.rules,
                                             automation_level=body.automationLevel, user_groups=body.userGroups,
                                             trust_reported_identity=body.trustReportedIdentity)
            after = group_store.get_group(conn, name)
            assert after is not None
            audit.append(conn, change(request, "device_group.put", "device_group", name,
                                      before=before.as_json() if before else None,
                                      after={**after.as_json(), "moves": moves}), now)
    except GroupRuleError as e:
        raise APIError(422, "invalid_request", str(e), field=e.where) from None
    except RbacError as e:
        raise APIError(409, "rejected", str(e), field=e.field) from None
    queue_current_protection(request, [m[0] for m in moves])
    return after.as_json()


@router.delete("/machinegroups/{name}")
def delete_group(
    name: str, request: Request, _: Principal = requires(Permission.MANAGE_PORTAL_SETTINGS)
) -> dict[str, Any]:
    svc = services(request)
    now = svc.clock.now()
    try:
        with svc.engine.begin() as conn:
            before = group_store.get_group(conn, name)
            moves = group_store.delete_group(conn, name)
            audit.append(conn, change(request, "device_group.delete", "device_group", name,
                                      before=before.as_json() if before else None, after={"moves": moves}), now)
    except RbacError as e:
        status = 404 if before is None else 409
        raise APIError(status, "rejected", str(e), field=e.field) from None
    queue_current_protection(request, [m[0] for m in moves])
    return {"deleted": name}


class RankBody(BaseModel):
    order: list[str] = Field(min_length=1)


@router.post("/machinegroups/ranks")
def rank_groups(
    body: RankBody, request: Request, _: Principal = requires(Permission.MANAGE_PORTAL_SETTINGS)
) -> dict[str, Any]:
    svc = services(request)
    now = svc.clock.now()
    try:
        with svc.engine.begin() as conn:
            before = [g.name for g in group_store.list_groups(conn) if not g.is_default]
            moves = group_store.set_ranks(conn, body.order)
            audit.append(conn, change(request, "device_group.rank", "device_group", "*", before={"order": before},
                                      after={"order": body.order, "moves": moves}), now)
    except RbacError as e:
        raise APIError(409, "rejected", str(e), field=e.field) from None
    queue_current_protection(request, [m[0] for m in moves])
    return {"order": body.order}
