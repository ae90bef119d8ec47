"""Machines: Defender's machine entity, the device timeline, offboarding."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from vigil.app import devices as app_devices
from vigil.core.rbac import Permission
from vigil.core.telemetry import parse_timestamp
from vigil.server import app_edge as edge
from vigil.server.antivirus import MachineAntivirus, protection_fields
from vigil.server.api import _odata as odata
from vigil.server.api._json import ByName, iso
from vigil.server.app_edge import translated
from vigil.server.auth import Principal, requires, services
from vigil.server.errors import APIError

router = APIRouter()


class EventCounters(ByName, BaseModel):
    """The agent's event-loss accounting from its last heartbeat (all 0 before the first)."""

    produced: int = 0
    spooled: int = 0
    sent: int = 0
    acknowledged: int = 0
    dropped: dict[str, int] = Field(default_factory=dict, description="reason → events dropped")


class Machine(ByName, MachineAntivirus):  # the antivirus fields: server/antivirus.py
    """Defender's machine entity, as far as Vigil knows it."""

    id: str
    computerDnsName: str
    firstSeen: str | None
    lastSeen: str | None
    osPlatform: str
    version: str
    osBuild: str | None
    agentVersion: str
    lastIpAddress: str | None
    lastExternalIpAddress: str | None
    healthStatus: str
    machineTags: list[str]
    rbacGroupId: int
    rbacGroupName: str
    riskScore: str = "None"
    exposureLevel: str = "None"
    isOffboarded: bool
    sensorHealth: dict[str, str] = Field(description="sensor provider → health, from the last heartbeat")
    eventCounters: EventCounters


class MachineList(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    odata_context: str = Field(default="/api/$metadata#Machines", alias="@odata.context")
    value: list[Machine]


def machine_of(d: app_devices.Device) -> Machine:
    r = d.record
    return Machine(
        id=r.id, computerDnsName=r.computer_dns_name, firstSeen=iso(r.first_seen), lastSeen=iso(r.last_seen),
        osPlatform=r.os_platform, version=r.os_version, osBuild=r.os_build, agentVersion=r.agent_version,
        lastIpAddress=r.last_ip, lastExternalIpAddress=r.last_external_ip, healthStatus=d.health.value,
        machineTags=list(r.tags), rbacGroupId=r.group_id, rbacGroupName=r.group_name,
        isOffboarded=r.offboarded_at is not None, sensorHealth={str(k): str(v) for k, v in r.sensors.items()},
        eventCounters=EventCounters.model_validate(r.counters),
        **protection_fields(r.sensors),
    )


def machines_of(request: Request) -> list[Machine]:
    """The caller's devices through the devices service (the portal's inventory uses it too)."""
    with translated():
        found = app_devices.list_devices(edge.store(request), services(request).clock, edge.principal(request))
    return [machine_of(d) for d in found]


def machine_by_id(request: Request, machine_id: str) -> Machine:
    with translated():
        d = app_devices.get_device(edge.store(request), services(request).clock, edge.principal(request), machine_id)
    return machine_of(d)


def list_machines(request: Request) -> list[Machine]:
    """The caller's machines (the portal's pages and the response-action routes); ``machines_of`` by its old name."""
    return machines_of(request)


def get_machine(request: Request, machine_id: str) -> Machine:
    """404 unless the machine is in the caller's device groups.

    A scope check for routes guarded by their own permission: it does not also demand the view one.
    """
    with translated():
        d = app_devices.in_scope(edge.store(request), services(request).clock, edge.principal(request), machine_id)
    return machine_of(d)


@router.get("/machines", response_model=MachineList)
def machines(request: Request, q: odata.ODataQuery = odata.options(),
             _: Principal = requires(Permission.VIEW_DATA_SECOPS)) -> Any:
    """The caller's machines, with OData's $filter, $orderby, $skip, $top and $select."""
    return odata.respond(q, machines_of(request), Machine, "/api/$metadata#Machines")


@router.get("/machines/{machine_id}", response_model=Machine)
def machine(machine_id: str, request: Request, _: Principal = requires(Permission.VIEW_DATA_SECOPS)) -> Machine:
    return machine_by_id(request, machine_id)


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
    """The device's timeline through the devices service (the portal's device page reads it too)."""
    with translated():
        return app_devices.timeline(edge.store(request), services(request).clock, edge.principal(request),
                                    machine_id, start, end, tables, limit)


class Timeline(BaseModel):
    """The device's events, newest first; each row has its table's columns (docs/telemetry-schema.md)."""

    value: list[dict[str, Any]]


@router.get("/machines/{machine_id}/timeline", response_model=Timeline)
def machine_timeline_api(
    machine_id: str,
    request: Request,
    from_: str | None = Query(default=None, alias="from"),
    to: str | None = None,
    table: list[str] | None = Query(default=None),
    limit: int = Query(default=1000, ge=1, le=10_000),
    _: Principal = requires(Permission.VIEW_DATA_SECOPS),
) -> Timeline:
    events = machine_timeline(
        request, machine_id, _time_arg(from_, "from"), _time_arg(to, "to"), table, limit
    )
    for e in events:
        for k, v in e.items():
            if isinstance(v, datetime):
                e[k] = iso(v)
    return Timeline(value=events)


class OffboardBody(BaseModel):
    Comment: str = Field(min_length=1, max_length=1000)


class OffboardResult(BaseModel):
    id: str
    type: str = "Offboard"
    status: str
    requestorComment: str


def offboard_result(done: app_devices.Offboarded) -> OffboardResult:
    return OffboardResult(id=done.device.id, status="Succeeded" if done.changed else "AlreadyOffboarded",
                          requestorComment=done.comment or "")


@router.post("/machines/{machine_id}/offboard", response_model=OffboardResult)
def offboard(
    machine_id: str, body: OffboardBody, request: Request,
    _: Principal = requires(Permission.MANAGE_SECURITY_SETTINGS),
) -> OffboardResult:
    with translated():
        done = app_devices.offboard(edge.store(request), services(request).clock, edge.principal(request),
                                    machine_id, body.Comment)
    return offboard_result(done)


class TagBody(BaseModel):
    Value: str = Field(min_length=1, max_length=200)
    Action: str = Field(pattern="^(Add|Remove)$")


@router.post("/machines/{machine_id}/tags", response_model=Machine)
def machine_tags(
    machine_id: str, body: TagBody, request: Request, _: Principal = requires(Permission.ALERTS_INVESTIGATION)
) -> Machine:
    """Defender's "Add or Remove Tag": the device's group is re-evaluated at once."""
    with translated():
        d = app_devices.set_tag(edge.store(request), services(request).clock, edge.principal(request), machine_id,
                                body.Value, add=body.Action == "Add")
    return machine_of(d)
