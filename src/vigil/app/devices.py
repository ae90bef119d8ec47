"""Devices: the scoped device list and one device, its tags, its timeline, and offboarding."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from vigil.app import asr as asr_service
from vigil.app.errors import Ambiguous, InvalidInput, NotFound
from vigil.app.paging import Page, PageRequest
from vigil.app.ports import AuditRecord, DeviceRecord, Store, UnitOfWork
from vigil.app.principal import Principal
from vigil.core.clock import Clock
from vigil.core.devices import HealthStatus, health_status
from vigil.core.groups import GroupRuleError
from vigil.core.rbac import Permission
from vigil.core.telemetry import TABLES

TIMELINE_DAYS = 30  # Defender's timeline default when no time range is given


@dataclass(frozen=True)
class Device:
    record: DeviceRecord
    health: HealthStatus


@dataclass(frozen=True)
class Offboarded:
    device: DeviceRecord
    # False when the device had been offboarded before: nothing changed and nothing was audited.
    changed: bool
    comment: str | None


def _device(record: DeviceRecord, now: datetime) -> Device:
    return Device(record, health_status(record.last_seen, now, record.offboarded_at is not None))


def visible(uow: UnitOfWork, who: Principal, device_id: str) -> DeviceRecord:
    """The device, if the caller may see it; one it may not see is as unknown as a missing one."""
    d = uow.devices.get(device_id)
    if d is None or not who.sees_group(d.group_id):
        raise NotFound(f"no machine with id {device_id!r}", field="id")
    return d


def list_devices(store: Store, clock: Clock, who: Principal) -> list[Device]:
    """Every device in the caller's device groups, by host name."""
    who.require(Permission.VIEW_DATA_SECOPS)
    now = clock.now()
    with store.begin() as uow:
        return [_device(d, now) for d in uow.devices.in_groups(who.device_group_ids)]


DEVICE_SORTS = ("name", "lastSeen", "group", "firstSeen")


def page_devices(store: Store, clock: Clock, who: Principal, req: PageRequest) -> Page[Device]:
    """One page of the caller's devices, paged, sorted and searched by the store."""
    who.require(Permission.VIEW_DATA_SECOPS)
    req = req.checked(DEVICE_SORTS)
    now = clock.now()
    with store.begin() as uow:
        found = uow.devices.page(who.device_group_ids, req)
    return Page(tuple(_device(d, now) for d in found.rows), found.total)


def get_device(store: Store, clock: Clock, who: Principal, device_id: str) -> Device:
    who.require(Permission.VIEW_DATA_SECOPS)
    return in_scope(store, clock, who, device_id)


def in_scope(store: Store, clock: Clock, who: Principal, device_id: str) -> Device:
    """The device if it is in the caller's device groups, whatever the caller's permissions.

    For operations guarded by a permission of their own (live response, response actions): their
    caller must reach a device it may act on without also holding the permission to view data.
    """
    with store.begin() as uow:
        return _device(visible(uow, who, device_id), clock.now())


def resolve(store: Store, who: Principal, ref: str, need_view: bool = True) -> DeviceRecord:
    """A device named by id, host name or an id prefix of 8+ characters, among those the caller sees.

    ``need_view=False`` for operations guarded by a permission of their own (see ``in_scope``).
    """
    if need_view:
        who.require(Permission.VIEW_DATA_SECOPS)
    with store.begin() as uow:
        found = [d for d in uow.devices.find(ref) if who.sees_group(d.group_id)]
    if not found:
        raise NotFound(f"no device matches {ref!r}", field="device")
    if len(found) > 1:
        ids = ", ".join(f"{d.id} ({d.computer_dns_name})" for d in found)
        raise Ambiguous(f"{ref!r} matches several devices: {ids}; give the device id", field="device")
    return found[0]


def offboard(store: Store, clock: Clock, who: Principal, device_id: str, comment: str | None) -> Offboarded:
    """Revoke a device's identity; its agent can no longer send or receive anything. Audited once."""
    who.require(Permission.MANAGE_SECURITY_SETTINGS)
    now = clock.now()
    with store.begin() as uow:
        d = visible(uow, who, device_id)
        changed = uow.devices.offboard(d.id, now)
        if changed:
            uow.audit.append(
                AuditRecord(who.actor, "device.offboard", "device", d.id, reason=comment, source_ip=who.source_ip), now
            )
    return Offboarded(d, changed, comment)


def set_tag(store: Store, clock: Clock, who: Principal, device_id: str, value: str, add: bool) -> Device:
    """Defender's "Add or Remove Tag": the device's group is re-evaluated at once; audited when it changed.

    Returns the device as it is now; one the change moved out of the caller's device groups is NotFound.
    """
    who.require(Permission.ALERTS_INVESTIGATION)
    now = clock.now()
    with store.begin() as uow:
        d = visible(uow, who, device_id)
        try:
            change = uow.devices.set_tags(d.id, [value] if add else [], [] if add else [value], now)
        except GroupRuleError as e:
            raise InvalidInput(str(e), field="Value") from None
        if change.before != change.after:
            uow.audit.append(AuditRecord(
                who.actor, "device.tags", "device", d.id, before={"tags": list(change.before)},
                after={"tags": list(change.after), "group_moves": [list(m) for m in change.group_moves]},
                source_ip=who.source_ip), now)
        # Its new group's protection bundle: policy pushes reached only the devices in the group at the time.
        asr_service.deliver_to_new_devices(uow, now, [m[0] for m in change.group_moves])
    return in_scope(store, clock, who, device_id)


def timeline(
    store: Store, clock: Clock, who: Principal, device_id: str, start: datetime | None = None,
    end: datetime | None = None, tables: Sequence[str] | None = None, limit: int = 1000,
) -> list[dict[str, Any]]:
    """The device's events newest first (the last 30 days unless a range is given); rows keep their table's
    column names (docs/telemetry-schema.md) and name their table in ``Table``."""
    who.require(Permission.VIEW_DATA_SECOPS)
    for t in tables or ():
        if t not in TABLES:
            raise InvalidInput(f"unknown table {t!r}; use one of {', '.join(TABLES)}", field="table")
    if limit < 1:
        raise InvalidInput("limit must be at least 1", field="limit")
    if start is None and end is None:
        start = clock.now() - timedelta(days=TIMELINE_DAYS)
    with store.begin() as uow:
        visible(uow, who, device_id)  # an unknown device is NotFound, not an empty timeline
        return uow.telemetry.timeline(device_id, start, end, list(tables) if tables else None, limit)
