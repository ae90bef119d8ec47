"""Machines: Defender's machine entity, the device timeline, offboarding."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from vigil.core.devices import health_status
from vigil.core.groups import GroupRuleError
from vigil.core.rbac import Permission
from vigil.core.telemetry import TABLES, parse_timestamp
from vigil.server.api._json import iso
from vigil.server.auth import Principal, requires, services
from vigil.server.errors import APIError
from vigil.server.scope import change, group_filter, principal_of
from vigil.store import audit
from vigil.store import devices as device_store
from vigil.store.groups import set_tags
from vigil.store.schema import device_groups, devices
from vigil.store.telemetry import timeline

router = APIRouter()


def machine_json(row: Any, group_name: str, now: datetime) -> dict[str, Any]:
    last_seen = device_store.aware(row.last_seen)
    return {
        "id": row.id,
        "computerDnsName": row.computer_dns_name,
        "firstSeen": iso(row.first_seen),
        "lastSeen": iso(row.last_seen),
        "osPlatform": row.os_platform,
        "version": row.os_version,
        "osBuild": row.os_build or None,
        "agentVersion": row.agent_version,
        "lastIpAddress": row.last_ip,
        "lastExternalIpAddress": row.last_external_ip,
        "healthStatus": health_status(last_seen, now, row.offboarded_at is not None).value,
        "machineTags": list(device_store.all_tags(row.tags, row.agent_tags)),
        "rbacGroupId": row.group_id,
        "rbacGroupName": group_name,
        "riskScore": "None",
        "exposureLevel": "None",
        "isOffboarded": row.offboarded_at is not None,
        "sensorHealth": row.sensors or {},
        "eventCounters": row.counters or {},
    }


def _machines_query(request: Request) -> sa.Select[Any]:
    """Devices with their group's name, limited to the caller's device groups."""
    return sa.select(devices, device_groups.c.name.label("group_name")).join(
        device_groups, device_groups.c.id == devices.c.group_id
    ).where(group_filter(principal_of(request), devices.c.group_id))


def list_machines(request: Request) -> list[dict[str, Any]]:
    svc = services(request)
    now = svc.clock.now()
    with svc.engine.connect() as conn:
        rows = conn.execute(_machines_query(request).order_by(devices.c.computer_dns_name)).all()
    return [machine_json(r, r.group_name, now) for r in rows]


def get_machine(request: Request, machine_id: str) -> dict[str, Any]:
    svc = services(request)
    with svc.engine.connect() as conn:
        row = conn.execute(_machines_query(request).where(devices.c.id == machine_id)).first()
    if row is None:
        raise APIError(404, "not_found", f"no machine with id {machine_id!r}", field="id")
    return machine_json(row, row.group_name, svc.clock.now())


@router.get("/machines")
def machines(request: Request, _: Principal = requires(Permission.VIEW_DATA_SECOPS)) -> dict[str, Any]:
    return {"@odata.context": "/api/$metadata#Machines", "value": list_machines(request)}


@router.get("/machines/{machine_id}")
def machine(
    machine_id: str, request: Request, _: Principal = requires(Permission.VIEW_DATA_SECOPS)
) -> dict[str, Any]:
    return get_machine(request, machine_id)


def _time_arg(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        raise APIError(422, "invalid_request", f"{name}: not an ISO 8601 time: {value!r}", field=name) from None


def machine_timeline(
    request: Request, machine_id: str, start: datetime | None, end: datetime | None,
    tables: list[str] | None, limit: int,
) -> list[dict[str, Any]]:
    get_machine(request, machine_id)  # 404 for unknown machines, not an empty list
    for t in tables or []:
        if t not in TABLES:
            raise APIError(422, "invalid_request", f"unknown table {t!r}", field="table")
    svc = services(request)
    if start is None and end is None:
        start = svc.clock.now() - timedelta(days=30)  # Defender's timeline default
    with svc.engine.connect() as conn:
        return timeline(conn, machine_id, start, end, tables, limit)


@router.get("/machines/{machine_id}/timeline")
def machine_timeline_api(
    machine_id: str,
    request: Request,
    from_: str | None = Query(default=None, alias="from"),
    to: str | None = None,
    table: list[str] | None = Query(default=None),
    limit: int = Query(default=1000, ge=1, le=10_000),
    _: Principal = requires(Permission.VIEW_DATA_SECOPS),
) -> dict[str, Any]:
    events = machine_timeline(
        request, machine_id, _time_arg(from_, "from"), _time_arg(to, "to"), table, limit
    )
    for e in events:
        for k, v in e.items():
            if isinstance(v, datetime):
                e[k] = iso(v)
    return {"value": events}


class OffboardBody(BaseModel):
    Comment: str = Field(min_length=1, max_length=1000)


@router.post("/machines/{machine_id}/offboard")
def offboard(
    machine_id: str, body: OffboardBody, request: Request,
    _: Principal = requires(Permission.MANAGE_SECURITY_SETTINGS),
) -> dict[str, Any]:
    svc = services(request)
    get_machine(request, machine_id)  # 404 unless the caller may see it
    with svc.engine.begin() as conn:
        done = device_store.offboard_device(conn, machine_id, svc.clock.now())
        if done:
            audit.append(conn, change(request, "device.offboard", "device", machine_id, reason=body.Comment),
                         svc.clock.now())
    return {"id": machine_id, "type": "Offboard", "status": "Succeeded" if done else "AlreadyOffboarded",
            "requestorComment": body.Comment}


class TagBody(BaseModel):
    Value: str = Field(min_length=1, max_length=200)
    Action: str = Field(pattern="^(Add|Remove)$")


@router.post("/machines/{machine_id}/tags")
def machine_tags(
    machine_id: str, body: TagBody, request: Request, _: Principal = requires(Permission.ALERTS_INVESTIGATION)
) -> dict[str, Any]:
    """Defender's "Add or Remove Tag": the device's group is re-evaluated at once."""
    svc = services(request)
    get_machine(request, machine_id)
    now = svc.clock.now()
    try:
        with svc.engine.begin() as conn:
            add, remove = ([body.Value], []) if body.Action == "Add" else ([], [body.Value])
            before, after = set_tags(conn, machine_id, add, remove)
            if before != after:
                moves = device_store.touch_device(conn, machine_id, now, tags=after)
                audit.append(conn, change(request, "device.tags", "device", machine_id, before={"tags": before},
                                          after={"tags": after, "group_moves": moves}), now)
    except GroupRuleError as e:
        raise APIError(422, "invalid_request", str(e), field="Value") from None
    return get_machine(request, machine_id)
