"""Device groups as administrators manage them: rules, ranks, automation level, access, tags."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from vigil.core.groups import AutomationLevel, Condition, parse_conditions, validate_tag
from vigil.core.names import match_name
from vigil.store.devices import ensure_default_group, reassign_devices, stored_group_name
from vigil.store.rbac import RbacError, device_group_user_groups, set_device_group_access
from vigil.store.schema import device_groups, devices, enrollment_tokens


@dataclass(frozen=True)
class DeviceGroup:
    id: int
    name: str
    description: str
    rank: int | None
    automation_level: AutomationLevel
    is_default: bool
    rules: tuple[Condition, ...]
    user_groups: tuple[str, ...]
    device_count: int
    # A name, OS or agent-tag change its devices report applies at once instead of waiting for review.
    trust_reported_identity: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "description": self.description, "rank": self.rank,
            "automationLevel": self.automation_level.value, "isDefault": self.is_default,
            "rules": [c.as_dict() for c in self.rules], "userGroups": list(self.user_groups),
            "deviceCount": self.device_count, "trustReportedIdentity": self.trust_reported_identity,
        }


def list_groups(conn: sa.Connection) -> list[DeviceGroup]:
    access = device_group_user_groups(conn)
    counts: dict[int, int] = dict(conn.execute(
        sa.select(devices.c.group_id, sa.func.count()).where(devices.c.offboarded_at.is_(None))
        .group_by(devices.c.group_id)
    ).all())
    rows = list(conn.execute(sa.select(device_groups)).all())
    # Ranked groups first, by rank; the default group (no rank) last, as Defender lists them.
    rows.sort(key=lambda r: (r.rank is None, r.rank or 0))
    return [
        DeviceGroup(int(r.id), r.name, r.description, r.rank, AutomationLevel(r.automation_level), bool(r.is_default),
                    parse_conditions(r.rules or []), tuple(access.get(int(r.id), [])), int(counts.get(r.id, 0)),
                    bool(r.trust_reported_identity))
        for r in rows
    ]


def get_group(conn: sa.Connection, name: str) -> DeviceGroup | None:
    groups = list_groups(conn)
    found = match_name(name, [g.name for g in groups])
    return next((g for g in groups if g.name == found), None)


def put_group(
    conn: sa.Connection, name: str, *, now: datetime, description: str | None = None,
    rules: list[dict[str, Any]] | None = None, automation_level: AutomationLevel | None = None,
    user_groups: list[str] | None = None, trust_reported_identity: bool | None = None,
) -> tuple[int, list[tuple[str, int, int]]]:
    """Create or change a group (new groups get the lowest rank); returns its id and device moves."""
    if not name.strip():
        raise RbacError("a device group needs a name", "name")
    ensure_default_group(conn, now)
    name = stored_group_name(conn, name)  # "Ring - Pilot" changes "Ring – Pilot", never makes a second one
    row = conn.execute(sa.select(device_groups).where(device_groups.c.name == name)).first()
    values: dict[str, Any] = {}
    if description is not None:
        values["description"] = description
    if rules is not None:
        if row is not None and row.is_default:
            raise RbacError("the default group matches every device no other group takes; it has no rule", "rules")
        values["rules"] = [c.as_dict() for c in parse_conditions(rules)]
    if automation_level is not None:
        values["automation_level"] = automation_level.value
    if trust_reported_identity is not None:
        values["trust_reported_identity"] = trust_reported_identity
    if row is None:
        top = conn.execute(sa.select(sa.func.max(device_groups.c.rank))).scalar() or 0
        values.setdefault("description", "")
        values.setdefault("rules", [])
        values.setdefault("automation_level", AutomationLevel.FULL.value)
        res = conn.execute(device_groups.insert().values(name=name, rank=top + 1, is_default=False, created_at=now,
                                                         **values))
        gid = int(res.inserted_primary_key[0])  # type: ignore[index]
    else:
        gid = int(row.id)
        if values:
            conn.execute(device_groups.update().where(device_groups.c.id == gid).values(**values))
    if user_groups is not None:
        set_device_group_access(conn, gid, user_groups, now)
    return gid, reassign_devices(conn)


def delete_group(conn: sa.Connection, name: str) -> list[tuple[str, int, int]]:
    row = conn.execute(sa.select(device_groups)
                       .where(device_groups.c.name == stored_group_name(conn, name))).first()
    if row is None:
        raise RbacError(f"no device group named {name!r}", "name")
    if row.is_default:
        raise RbacError("the default device group cannot be deleted", "name")
    default = conn.execute(sa.select(device_groups.c.id).where(device_groups.c.is_default)).scalar_one()
    # Devices and unused tokens fall back to the default group before the rules run again.
    conn.execute(devices.update().where(devices.c.group_id == row.id).values(group_id=default))
    conn.execute(enrollment_tokens.update().where(enrollment_tokens.c.group_id == row.id).values(group_id=default))
    set_device_group_access(conn, int(row.id), [], row.created_at)
    conn.execute(device_groups.delete().where(device_groups.c.id == row.id))
    return reassign_devices(conn)


def set_ranks(conn: sa.Connection, names: list[str]) -> list[tuple[str, int, int]]:
    """Rank the groups in the given order (1 first); every ranked group must be listed, the default never."""
    rows = {r.name: r for r in conn.execute(sa.select(device_groups))}
    for n in names:
        if n not in rows:
            raise RbacError(f"no device group named {n!r}", "order")
        if rows[n].is_default:
            raise RbacError("the default device group cannot be re-ranked", "order")
    ranked = {n for n, r in rows.items() if not r.is_default}
    if set(names) != ranked or len(names) != len(ranked):
        raise RbacError(f"list every device group once: {', '.join(sorted(ranked))}", "order")
    for i, n in enumerate(names, start=1):
        conn.execute(device_groups.update().where(device_groups.c.id == rows[n].id).values(rank=i))
    return reassign_devices(conn)


def set_tags(conn: sa.Connection, device_id: str, add: list[str], remove: list[str]) -> tuple[list[str], list[str]]:
    """Change a device's tags; returns (before, after). The caller re-evaluates its group."""
    row = conn.execute(sa.select(devices.c.tags).where(devices.c.id == device_id)).first()
    if row is None:
        raise LookupError(device_id)
    before = list(row.tags or [])
    after = [t for t in before if t not in {validate_tag(x) for x in remove}]
    for t in (validate_tag(x) for x in add):
        if t not in after:
            after.append(t)
    return before, after
