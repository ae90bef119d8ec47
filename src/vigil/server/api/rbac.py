"""Permissions mode, roles, user groups and users: who may do what (Manage portal system settings)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from vigil.core.rbac import BasicRole, Permission, UnknownPermission, parse_permissions
from vigil.server.accounts import check_new_password
from vigil.server.auth import Principal, requires, services
from vigil.server.errors import APIError
from vigil.server.scope import change
from vigil.store import audit, rbac
from vigil.store.groups import list_groups
from vigil.store.sessions import close_user_sessions
from vigil.store.users import UserExists, create_user, find_user, list_users, update_user

router = APIRouter()
ADMIN = Permission.MANAGE_PORTAL_SETTINGS


def _rbac_error(e: rbac.RbacError | UnknownPermission) -> APIError:
    field = e.field if isinstance(e, rbac.RbacError) else "permissions"
    return APIError(409 if isinstance(e, rbac.RbacError) else 422, "rejected", str(e), field=field)


@router.get("/rbac")
def rbac_overview(request: Request, _: Principal = requires(ADMIN)) -> dict[str, Any]:
    svc = services(request)
    with svc.engine.connect() as conn:
        roles = rbac.list_roles(conn)
        return {
            "mode": rbac.get_mode(conn).value,
            "roles": [{"name": r.name, "description": r.description, "builtin": r.builtin,
                       "permissions": sorted(p.value for p in r.permissions), "userGroups": list(r.user_groups)}
                      for r in roles],
            "userGroups": [{"name": n, "members": len(rbac.members(conn, n))} for _, n in rbac.list_user_groups(conn)],
        }


def own_access(request: Request, who: Principal) -> dict[str, Any]:
    """What the caller may do, for the portal's read-only users page: their basic role, user groups, the roles
    those groups hold (with permissions) and the device groups they see. Nothing of other accounts: listing
    users stays Manage portal system settings."""
    with services(request).engine.connect() as conn:
        mine = set(rbac.user_group_names(conn, who.user.id))
        groups = {int(g.id): g.name for g in list_groups(conn)}
        return {
            "mode": rbac.get_mode(conn).value, "role": who.user.role.value, "userGroups": sorted(mine),
            "permissions": sorted(p.value for p in who.permissions),
            "roles": [{"name": r.name, "description": r.description,
                       "permissions": sorted(p.value for p in r.permissions),
                       "userGroups": [g for g in r.user_groups if g in mine]}
                      for r in rbac.list_roles(conn) if mine & set(r.user_groups)],
            "deviceGroups": None if who.device_group_ids is None
            else sorted(groups[g] for g in who.device_group_ids if g in groups),
        }


class ModeBody(BaseModel):
    mode: str = Field(pattern="^(basic|rbac)$")


@router.post("/rbac/mode")
def set_mode(body: ModeBody, request: Request, _: Principal = requires(ADMIN)) -> dict[str, Any]:
    svc = services(request)
    now = svc.clock.now()
    with svc.engine.begin() as conn:
        current = rbac.get_mode(conn).value
        if body.mode == "basic" and current == "rbac":
            raise APIError(409, "irreversible", "RBAC mode cannot be switched back to basic mode", field="mode")
        if body.mode == "rbac" and rbac.switch_to_rbac(conn, now):
            audit.append(conn, change(request, "rbac.mode", "tenant", "permissions_mode", before={"mode": current},
                                      after={"mode": "rbac"}), now)
    return {"mode": body.mode}


class RoleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = Field(default="", max_length=1000)
    permissions: list[str]
    userGroups: list[str] = Field(default_factory=list)


@router.put("/roles/{name}")
def put_role(name: str, body: RoleBody, request: Request, _: Principal = requires(ADMIN)) -> dict[str, Any]:
    svc = services(request)
    now = svc.clock.now()
    try:
        perms = parse_permissions(body.permissions)
        with svc.engine.begin() as conn:
            before = rbac.role_by_name(conn, name)
            rbac.put_role(conn, name, body.description, perms, body.userGroups, now)
            after = rbac.role_by_name(conn, name)
            audit.append(conn, change(request, "role.put", "role", name, before=_role(before), after=_role(after)), now)
    except (rbac.RbacError, UnknownPermission) as e:
        raise _rbac_error(e) from None
    return _role(after) or {}


def _role(r: rbac.Role | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {"name": r.name, "description": r.description, "permissions": sorted(p.value for p in r.permissions),
            "userGroups": list(r.user_groups), "builtin": r.builtin}


@router.delete("/roles/{name}")
def delete_role(name: str, request: Request, _: Principal = requires(ADMIN)) -> dict[str, Any]:
    svc = services(request)
    now = svc.clock.now()
    try:
        with svc.engine.begin() as conn:
            before = rbac.role_by_name(conn, name)
            if not rbac.delete_role(conn, name):
                raise APIError(404, "not_found", f"no role named {name!r}", field="name")
            audit.append(conn, change(request, "role.delete", "role", name, before=_role(before)), now)
    except rbac.RbacError as e:
        raise _rbac_error(e) from None
    return {"deleted": name}


def _user_id(conn: Any, username: str) -> int:
    found = find_user(conn, username)  # disabled accounts too: PATCH {"disabled": false} enables one
    if found is None:
        raise APIError(404, "not_found", f"no user named {username!r}", field="username")
    return found[0].id


def _group_exists(conn: Any, group: str) -> bool:
    return any(name == group for _, name in rbac.list_user_groups(conn))


class MemberBody(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    # A temporary role assignment ("applied temporarily and removed after the deployment"): the membership
    # stops granting the group's roles at this time; absent = for good.
    expires_at: AwareDatetime | None = Field(default=None, alias="expiresAt")


@router.put("/usergroups/{group}/members/{username}")
def add_member(group: str, username: str, request: Request, body: MemberBody | None = None,
               _: Principal = requires(ADMIN)) -> dict[str, Any]:
    svc = services(request)
    now = svc.clock.now()
    expires = body.expires_at if body is not None else None
    if expires is not None and expires <= now:
        raise APIError(422, "invalid_request", "expiresAt must be in the future", field="expiresAt")
    try:
        with svc.engine.begin() as conn:
            uid = _user_id(conn, username)
            if not _group_exists(conn, group) or uid not in rbac.members(conn, group):
                close_user_sessions(conn, uid, now)  # the user's roles change with the group: sign in again
            rbac.add_member(conn, group, uid, now, expires_at=expires)
            after: dict[str, Any] = {"user": username}
            if expires is not None:
                after["expires_at"] = expires.isoformat()
            audit.append(conn, change(request, "user_group.add_member", "user_group", group, after=after), now)
    except rbac.RbacError as e:
        raise _rbac_error(e) from None
    return {"userGroup": group, "user": username, "expiresAt": expires.isoformat() if expires else None}


@router.delete("/usergroups/{group}/members/{username}")
def remove_member(group: str, username: str, request: Request, _: Principal = requires(ADMIN)) -> dict[str, Any]:
    svc = services(request)
    now = svc.clock.now()
    try:
        with svc.engine.begin() as conn:
            uid = _user_id(conn, username)
            rbac.remove_member(conn, group, uid)
            close_user_sessions(conn, uid, now)  # the user's roles change with the group: sign in again
            audit.append(conn, change(request, "user_group.remove_member", "user_group", group,
                                      before={"user": username}), now)
    except rbac.RbacError as e:
        raise APIError(404, "not_found", str(e), field="group") from None
    return {"userGroup": group, "removed": username}


@router.get("/users")
def users(request: Request, _: Principal = requires(ADMIN)) -> dict[str, Any]:
    svc = services(request)
    with svc.engine.connect() as conn:
        return {"value": [{"username": u.username, "email": u.email, "role": u.role.value, "source": u.source,
                           "disabled": off, "userGroups": rbac.user_group_names(conn, u.id)}
                          for u, off in list_users(conn)]}


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._@-]+$")
    # The policy (length, blocklist, strength) is checked below, with a message naming what is wrong.
    password: str = Field(min_length=1, max_length=1024)
    role: BasicRole = BasicRole.READ_ONLY
    email: str | None = Field(default=None, max_length=255)


@router.post("/users", status_code=201)
def add_user(body: NewUser, request: Request, _: Principal = requires(ADMIN)) -> dict[str, Any]:
    svc = services(request)
    now = svc.clock.now()
    check_new_password(svc, body.username, body.email, body.password)
    try:
        with svc.engine.begin() as conn:
            user = create_user(conn, body.username, body.password, body.role, now, email=body.email)
            audit.append(conn, change(request, "user.create", "user", user.username,
                                      after={"role": user.role.value, "email": user.email}), now)
    except UserExists as e:
        raise APIError(409, "exists", str(e), field="username") from None
    return {"username": user.username, "role": user.role.value, "email": user.email}


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: BasicRole | None = None
    email: str | None = Field(default=None, max_length=255)
    disabled: bool | None = None


@router.patch("/users/{username}")
def patch_user(username: str, body: UserPatch, request: Request, _: Principal = requires(ADMIN)) -> dict[str, Any]:
    svc = services(request)
    now = svc.clock.now()
    with svc.engine.begin() as conn:
        uid = _user_id(conn, username)
        found = find_user(conn, username)
        before = found[0] if found else None
        update_user(conn, uid, role=body.role, email=body.email, disabled=body.disabled)
        # A disabled account, or one whose role changed, is signed out everywhere at once.
        if body.disabled or (body.role is not None and before is not None and body.role is not before.role):
            close_user_sessions(conn, uid, now)
        audit.append(conn, change(request, "user.update", "user", username,
                                  after=body.model_dump(exclude_none=True, mode="json")), now)
    return {"username": username, **body.model_dump(exclude_none=True, mode="json")}
