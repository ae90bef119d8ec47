"""Roles, user groups and their members, which user groups see which device groups, and the mode."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from vigil.core.rbac import (
    ADMIN_ROLE_NAME,
    STAKEHOLDER_PERMISSIONS,
    STAKEHOLDER_ROLE_NAME,
    Access,
    Permission,
    PermissionsMode,
    UserGroupGrant,
    access_of,
)
from vigil.store.devices import aware
from vigil.store.schema import (
    device_group_access,
    device_groups,
    role_user_groups,
    roles,
    user_group_members,
    user_groups,
)
from vigil.store.tenant import get_setting, set_setting
from vigil.store.users import User

MODE_KEY = "permissions_mode"


class RbacError(ValueError):
    """A change the permission model refuses; ``field`` names the offending input."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def get_mode(conn: sa.Connection) -> PermissionsMode:
    return PermissionsMode(get_setting(conn, MODE_KEY, PermissionsMode.BASIC.value))


def switch_to_rbac(conn: sa.Connection, now: datetime) -> bool:
    """Turn RBAC mode on (for good); returns False when it already was."""
    if get_mode(conn) is PermissionsMode.RBAC:
        return False
    ensure_admin_role(conn, now)
    ensure_stakeholder_role(conn, now)
    set_setting(conn, MODE_KEY, PermissionsMode.RBAC.value, now)
    return True


def ensure_stakeholder_role(conn: sa.Connection, now: datetime) -> int:
    """The built-in read-only Stakeholder role (plan, reports, ring progress; no device data)."""
    row = conn.execute(sa.select(roles.c.id).where(roles.c.name == STAKEHOLDER_ROLE_NAME)).first()
    if row:
        return int(row.id)
    res = conn.execute(roles.insert().values(
        name=STAKEHOLDER_ROLE_NAME, builtin=True, created_at=now,
        description="Business owners and stakeholders: the deployment plan, reports and ring progress "
                    "(device counts); no device data.",
        permissions=sorted(p.value for p in STAKEHOLDER_PERMISSIONS)))
    return int(res.inserted_primary_key[0])  # type: ignore[index]


def ensure_admin_role(conn: sa.Connection, now: datetime) -> int:
    row = conn.execute(sa.select(roles.c.id).where(roles.c.builtin, roles.c.name == ADMIN_ROLE_NAME)).first()
    if row:
        return int(row.id)
    res = conn.execute(
        roles.insert().values(
            name=ADMIN_ROLE_NAME, description="All permissions on every device group.",
            permissions=sorted(p.value for p in Permission), builtin=True, created_at=now,
        )
    )
    return int(res.inserted_primary_key[0])  # type: ignore[index]


@dataclass(frozen=True)
class Role:
    id: int
    name: str
    description: str
    permissions: frozenset[Permission]
    builtin: bool
    user_groups: tuple[str, ...]


def list_roles(conn: sa.Connection) -> list[Role]:
    links: dict[int, list[str]] = {}
    for r in conn.execute(
        sa.select(role_user_groups.c.role_id, user_groups.c.name)
        .join(user_groups, user_groups.c.id == role_user_groups.c.user_group_id)
        .order_by(user_groups.c.name)
    ):
        links.setdefault(int(r.role_id), []).append(r.name)
    return [
        Role(int(r.id), r.name, r.description, frozenset(Permission(p) for p in r.permissions), bool(r.builtin),
             tuple(links.get(int(r.id), [])))
        for r in conn.execute(sa.select(roles).order_by(roles.c.builtin.desc(), roles.c.name))
    ]


def role_by_name(conn: sa.Connection, name: str) -> Role | None:
    return next((r for r in list_roles(conn) if r.name == name), None)


def user_group_id(conn: sa.Connection, name: str, now: datetime | None = None) -> int:
    """The id of user group ``name``; created when ``now`` is given, else RbacError if unknown."""
    row = conn.execute(sa.select(user_groups.c.id).where(user_groups.c.name == name)).first()
    if row:
        return int(row.id)
    if now is None:
        raise RbacError(f"no user group named {name!r}", "user_groups")
    res = conn.execute(user_groups.insert().values(name=name, description="", created_at=now))
    return int(res.inserted_primary_key[0])  # type: ignore[index]


def put_role(
    conn: sa.Connection, name: str, description: str, permissions: frozenset[Permission],
    groups: list[str], now: datetime,
) -> int:
    """Create or replace a role and the user groups it is assigned to (groups are created as needed)."""
    if name == ADMIN_ROLE_NAME:
        raise RbacError("the built-in administrator role cannot be changed", "name")
    if not permissions:
        raise RbacError("a role needs at least one permission", "permissions")
    if name == STAKEHOLDER_ROLE_NAME:
        if permissions != STAKEHOLDER_PERMISSIONS:
            raise RbacError(f"the built-in {STAKEHOLDER_ROLE_NAME} role is read-only: its permissions are fixed "
                            f"({', '.join(sorted(STAKEHOLDER_PERMISSIONS))}); only its user groups change",
                            "permissions")
        ensure_stakeholder_role(conn, now)
    row = conn.execute(sa.select(roles.c.id).where(roles.c.name == name)).first()
    values = {"description": description, "permissions": sorted(p.value for p in permissions)}
    if row:
        rid = int(row.id)
        conn.execute(roles.update().where(roles.c.id == rid).values(**values))
    else:
        res = conn.execute(roles.insert().values(name=name, builtin=False, created_at=now, **values))
        rid = int(res.inserted_primary_key[0])  # type: ignore[index]
    conn.execute(role_user_groups.delete().where(role_user_groups.c.role_id == rid))
    for g in dict.fromkeys(groups):
        conn.execute(role_user_groups.insert().values(role_id=rid, user_group_id=user_group_id(conn, g, now)))
    return rid


def delete_role(conn: sa.Connection, name: str) -> bool:
    row = conn.execute(sa.select(roles.c.id, roles.c.builtin).where(roles.c.name == name)).first()
    if row is None:
        return False
    if row.builtin:
        raise RbacError(f"the built-in role {name!r} cannot be deleted", "name")
    conn.execute(role_user_groups.delete().where(role_user_groups.c.role_id == row.id))
    conn.execute(roles.delete().where(roles.c.id == row.id))
    return True


def list_user_groups(conn: sa.Connection) -> list[tuple[int, str]]:
    return [(int(r.id), r.name) for r in conn.execute(sa.select(user_groups).order_by(user_groups.c.name))]


def members(conn: sa.Connection, group: str, now: datetime | None = None) -> list[int]:
    """The group's members; with ``now``, only those whose assignment has not expired."""
    gid = user_group_id(conn, group)
    q = sa.select(user_group_members.c.user_id).where(user_group_members.c.user_group_id == gid)
    if now is not None:
        q = q.where(_current(now))
    return [int(r.user_id) for r in conn.execute(q)]


def add_member(conn: sa.Connection, group: str, user_id: int, now: datetime, via: str = "local",
               expires_at: datetime | None = None) -> None:
    """Add the user to the group; ``expires_at`` makes it a temporary role assignment (None: for good)."""
    if expires_at is not None and expires_at <= now:
        raise RbacError("a temporary assignment must expire in the future", "expires_at")
    gid = user_group_id(conn, group, now)
    where = (user_group_members.c.user_group_id == gid, user_group_members.c.user_id == user_id)
    exists = conn.execute(sa.select(user_group_members.c.user_id).where(*where)).first()
    if not exists:
        conn.execute(user_group_members.insert().values(user_group_id=gid, user_id=user_id, via=via,
                                                        expires_at=expires_at))
    else:
        conn.execute(user_group_members.update().where(*where).values(expires_at=expires_at))


def membership_expiry(conn: sa.Connection, group: str, user_id: int) -> datetime | None:
    row = conn.execute(sa.select(user_group_members.c.expires_at).where(
        user_group_members.c.user_group_id == user_group_id(conn, group), user_group_members.c.user_id == user_id)
    ).first()
    return aware(row.expires_at) if row is not None and row.expires_at is not None else None


def _current(now: datetime) -> Any:
    """Memberships that count at ``now``: permanent ones, and temporary ones not yet expired."""
    return sa.or_(user_group_members.c.expires_at.is_(None), user_group_members.c.expires_at > now)


def remove_member(conn: sa.Connection, group: str, user_id: int) -> None:
    gid = user_group_id(conn, group)
    conn.execute(user_group_members.delete().where(
        user_group_members.c.user_group_id == gid, user_group_members.c.user_id == user_id))


def sync_sso_memberships(conn: sa.Connection, user_id: int, idp_groups: list[str]) -> list[str]:
    """Make the user's single-sign-on memberships exactly the Vigil user groups named by the IdP."""
    conn.execute(user_group_members.delete().where(
        user_group_members.c.user_id == user_id, user_group_members.c.via == "oidc"))
    known = {name: gid for gid, name in list_user_groups(conn)}
    joined = []
    for g in dict.fromkeys(idp_groups):
        if g in known:
            exists = conn.execute(sa.select(user_group_members.c.user_id).where(
                user_group_members.c.user_group_id == known[g], user_group_members.c.user_id == user_id)).first()
            if not exists:
                conn.execute(user_group_members.insert().values(user_group_id=known[g], user_id=user_id, via="oidc"))
            joined.append(g)
    return joined


def user_group_names(conn: sa.Connection, user_id: int) -> list[str]:
    return [r.name for r in conn.execute(
        sa.select(user_groups.c.name).join(user_group_members, user_group_members.c.user_group_id == user_groups.c.id)
        .where(user_group_members.c.user_id == user_id).order_by(user_groups.c.name))]


def set_device_group_access(conn: sa.Connection, device_group_id: int, groups: list[str], now: datetime) -> None:
    conn.execute(device_group_access.delete().where(device_group_access.c.device_group_id == device_group_id))
    for g in dict.fromkeys(groups):
        conn.execute(device_group_access.insert().values(
            device_group_id=device_group_id, user_group_id=user_group_id(conn, g, now)))


def device_group_user_groups(conn: sa.Connection) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {int(r.id): [] for r in conn.execute(sa.select(device_groups.c.id))}
    for r in conn.execute(
        sa.select(device_group_access.c.device_group_id, user_groups.c.name)
        .join(user_groups, user_groups.c.id == device_group_access.c.user_group_id).order_by(user_groups.c.name)
    ):
        out.setdefault(int(r.device_group_id), []).append(r.name)
    return out


def access_for(conn: sa.Connection, user: User, now: datetime | None = None) -> Access:
    """The user's permissions and visible device groups under the current mode.

    A temporary role assignment (a membership with an expiry) stops counting at its expiry: ``now`` is the
    caller's clock, the system's when not given.
    """
    now = now or datetime.now(UTC)
    mode = get_mode(conn)
    if mode is PermissionsMode.BASIC:
        return access_of(mode, user.role, [], {})
    perms: dict[int, set[Permission]] = {}
    admin: set[int] = set()
    q = (
        sa.select(user_group_members.c.user_group_id, roles.c.permissions, roles.c.builtin, roles.c.name)
        .select_from(user_group_members)
        .join(role_user_groups, role_user_groups.c.user_group_id == user_group_members.c.user_group_id, isouter=True)
        .join(roles, roles.c.id == role_user_groups.c.role_id, isouter=True)
        .where(user_group_members.c.user_id == user.id, _current(now))
    )
    for r in conn.execute(q):
        gid = int(r.user_group_id)
        perms.setdefault(gid, set()).update(Permission(p) for p in (r.permissions or []))
        if r.builtin and r.name == ADMIN_ROLE_NAME:
            admin.add(gid)
    grants = [UserGroupGrant(g, frozenset(p), g in admin) for g, p in perms.items()]
    dga: dict[int, set[int]] = {int(r.id): set() for r in conn.execute(sa.select(device_groups.c.id))}
    for r in conn.execute(sa.select(device_group_access)):
        dga[int(r.device_group_id)].add(int(r.user_group_id))
    return access_of(mode, user.role, grants, {k: frozenset(v) for k, v in dga.items()})
