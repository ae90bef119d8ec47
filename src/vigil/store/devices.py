"""Device, device-group and enrollment-token records."""

from __future__ import annotations

import secrets as _secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from vigil.core.devices import DEFAULT_GROUP_NAME
from vigil.core.groups import DeviceFacts, GroupRule, assign_group, parse_conditions
from vigil.core.names import match_name
from vigil.store import errors
from vigil.store.schema import device_groups, devices, enrollment_tokens
from vigil.store.secrets import digest, new_secret, same

TOKEN_PREFIX = "vge_"


class EnrollmentRefused(Exception):
    """An enrollment token is unknown, expired, revoked or used up; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# The store's own NotFound (store/errors.py), named here too for the callers that catch devices.NotFound.
NotFound = errors.NotFound


@dataclass(frozen=True)
class IssuedToken:
    token: str
    token_id: int
    group: str
    expires_at: datetime
    max_uses: int


def ensure_default_group(conn: sa.Connection, now: datetime) -> int:
    row = conn.execute(sa.select(device_groups.c.id).where(device_groups.c.is_default)).first()
    if row:
        return int(row.id)
    res = conn.execute(
        device_groups.insert().values(
            name=DEFAULT_GROUP_NAME, description="Devices that match no other group.", rank=None,
            is_default=True, created_at=now,
        )
    )
    return int(res.inserted_primary_key[0])  # type: ignore[index]


def stored_group_name(conn: sa.Connection, name: str) -> str:
    """The device group's name as stored for a typed one: "Ring - Pilot" finds "Ring – Pilot" (unchanged when no
    group matches, so the caller's "not found" names what was typed)."""
    if conn.execute(sa.select(device_groups.c.id).where(device_groups.c.name == name)).first() is not None:
        return name
    return match_name(name, conn.execute(sa.select(device_groups.c.name)).scalars()) or name


def group_id_by_name(conn: sa.Connection, name: str | None, now: datetime) -> int:
    if name is None or name == DEFAULT_GROUP_NAME:
        return ensure_default_group(conn, now)
    row = conn.execute(sa.select(device_groups.c.id)
                       .where(device_groups.c.name == stored_group_name(conn, name))).first()
    if row is None:
        raise NotFound(f"no device group named {name!r}")
    return int(row.id)


def create_group(conn: sa.Connection, name: str, now: datetime, description: str = "") -> int:
    top = conn.execute(sa.select(sa.func.max(device_groups.c.rank))).scalar() or 0
    res = conn.execute(
        device_groups.insert().values(
            name=name, description=description, rank=top + 1, is_default=False, created_at=now
        )
    )
    return int(res.inserted_primary_key[0])  # type: ignore[index]


def issue_token(
    conn: sa.Connection, *, group: str | None, expires_at: datetime, max_uses: int, created_by: str,
    now: datetime,
) -> IssuedToken:
    if max_uses < 1:
        raise ValueError("uses must be at least 1")
    if expires_at <= now:
        raise ValueError("expiry must be in the future")
    gid = group_id_by_name(conn, group, now)
    token = new_secret(TOKEN_PREFIX)
    res = conn.execute(
        enrollment_tokens.insert().values(
            token_hash=digest(token), group_id=gid, max_uses=max_uses, uses=0, expires_at=expires_at,
            created_by=created_by, created_at=now,
        )
    )
    name = conn.execute(sa.select(device_groups.c.name).where(device_groups.c.id == gid)).scalar_one()
    return IssuedToken(token, int(res.inserted_primary_key[0]), name, expires_at, max_uses)  # type: ignore[index]


def aware(ts: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything Vigil writes is UTC.
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def redeem_token(conn: sa.Connection, token: str, now: datetime) -> tuple[int, int]:
    """Use one enrollment of ``token``; returns (token id, group id). Atomic against races."""
    row = conn.execute(
        sa.select(enrollment_tokens).where(enrollment_tokens.c.token_hash == digest(token))
    ).first()
    if row is None:
        raise EnrollmentRefused("unknown enrollment token")
    if row.revoked_at is not None:
        raise EnrollmentRefused("enrollment token was revoked")
    if aware(row.expires_at) <= now:
        raise EnrollmentRefused("enrollment token has expired")
    # The guarded UPDATE is what makes N-use tokens safe under concurrent enrollments.
    res = conn.execute(
        enrollment_tokens.update()
        .where(enrollment_tokens.c.id == row.id, enrollment_tokens.c.uses < enrollment_tokens.c.max_uses)
        .values(uses=enrollment_tokens.c.uses + 1)
    )
    if res.rowcount != 1:
        raise EnrollmentRefused("enrollment token is used up")
    return int(row.id), int(row.group_id)


def register_device(
    conn: sa.Connection, *, token_id: int, group_id: int, hostname: str, os_platform: str,
    os_version: str, agent_version: str, machine_id: str, ip: str | None, now: datetime,
) -> tuple[str, str]:
    """Create a device identity; returns (device id, credential). The credential is shown once."""
    device_id = _secrets.token_hex(20)  # 40 hex characters, the shape of Defender's machine ids
    credential = new_secret(f"vgd_{device_id}.")
    conn.execute(
        devices.insert().values(
            id=device_id, computer_dns_name=hostname, os_platform=os_platform, os_version=os_version,
            agent_version=agent_version, machine_id=machine_id, group_id=group_id, tags=[],
            credential_hash=digest(credential), first_seen=now, last_seen=now, last_ip=ip,
            last_external_ip=ip, counters={}, sensors={}, enrollment_token_id=token_id,
        )
    )
    reassign_devices(conn, [device_id])  # a higher-ranked rule may claim it by name or OS
    return device_id, credential


def authenticate_device(conn: sa.Connection, credential: str) -> str | None:
    """The device id a credential belongs to, or None if it is forged or revoked."""
    if not credential.startswith("vgd_") or "." not in credential:
        return None
    device_id = credential[4:].split(".", 1)[0]
    row = conn.execute(
        sa.select(devices.c.credential_hash, devices.c.offboarded_at).where(devices.c.id == device_id)
    ).first()
    if row is None or row.offboarded_at is not None:
        return None
    return device_id if same(row.credential_hash, digest(credential)) else None


# A change to any of these may move the device to another group.
_MATCHED_FIELDS = frozenset({"computer_dns_name", "os_platform", "tags", "agent_tags"})


def touch_device(conn: sa.Connection, device_id: str, now: datetime, **fields: Any) -> list[tuple[str, int, int]]:
    """Record that the device was seen, with any new facts; returns group moves (device, from, to)."""
    conn.execute(devices.update().where(devices.c.id == device_id).values(last_seen=now, **fields))
    if _MATCHED_FIELDS & fields.keys():
        return reassign_devices(conn, [device_id])
    return []


def all_tags(tags: list[str] | None, agent_tags: list[str] | None) -> tuple[str, ...]:
    """A device's tags: those analysts set plus those its agent reports."""
    return tuple(sorted(set(tags or ()) | set(agent_tags or ())))


def group_rules(conn: sa.Connection) -> list[GroupRule]:
    return [
        GroupRule(int(r.id), r.rank, parse_conditions(r.rules or [], f"device group {r.name!r}"), bool(r.is_default))
        for r in conn.execute(sa.select(device_groups))
    ]


def reassign_devices(conn: sa.Connection, device_ids: list[str] | None = None) -> list[tuple[str, int, int]]:
    """Put each device (all when ``device_ids`` is None) in its highest-ranked matching group."""
    rules = group_rules(conn)
    q = sa.select(
        devices.c.id, devices.c.computer_dns_name, devices.c.os_platform, devices.c.tags, devices.c.agent_tags,
        devices.c.group_id,
        enrollment_tokens.c.group_id.label("enrolled_group_id"),
    ).join(enrollment_tokens, enrollment_tokens.c.id == devices.c.enrollment_token_id, isouter=True)
    if device_ids is not None:
        q = q.where(devices.c.id.in_(device_ids))
    moves = []
    for r in conn.execute(q).all():
        facts = DeviceFacts(r.computer_dns_name, r.os_platform, all_tags(r.tags, r.agent_tags))
        new = assign_group(facts, rules, r.enrolled_group_id)
        if new != r.group_id:
            conn.execute(devices.update().where(devices.c.id == r.id).values(group_id=new))
            moves.append((str(r.id), int(r.group_id), new))
    return moves


def offboard_device(conn: sa.Connection, device_id: str, now: datetime) -> bool:
    res = conn.execute(
        devices.update()
        .where(devices.c.id == device_id, devices.c.offboarded_at.is_(None))
        .values(offboarded_at=now, credential_hash="revoked")
    )
    return res.rowcount == 1


def find_devices(conn: sa.Connection, ref: str) -> list[sa.Row[Any]]:
    """Devices whose id or host name is ``ref`` (an id prefix of 8+ characters also matches)."""
    q = sa.select(devices).where(
        sa.or_(
            devices.c.id == ref,
            devices.c.computer_dns_name == ref,
            sa.and_(sa.literal(len(ref) >= 8), devices.c.id.startswith(ref)),
        )
    )
    return list(conn.execute(q))
