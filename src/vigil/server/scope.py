"""Device-group scoping: the one place that says which devices (and their data) a caller may see."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import Request

from vigil.server.auth import Principal, client_ip
from vigil.store.audit import Change
from vigil.store.schema import devices


def principal_of(request: Request) -> Principal:
    """The caller the route's guard admitted; failing closed if a route forgot its guard."""
    who = getattr(request.state, "principal", None)
    if not isinstance(who, Principal):
        raise RuntimeError(f"{request.url.path}: no guarded caller; every route must declare requires(...)")
    return who


def visible_group_ids(principal: Principal) -> frozenset[int] | None:
    """The device groups the caller may see; None means all of them."""
    return principal.device_group_ids


def group_filter(principal: Principal, group_id: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    ids = visible_group_ids(principal)
    return sa.true() if ids is None else group_id.in_(sorted(ids))


def device_filter(principal: Principal, device_id: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    """A WHERE clause on any column holding a device id (alerts, telemetry, actions)."""
    ids = visible_group_ids(principal)
    if ids is None:
        return sa.true()
    return device_id.in_(sa.select(devices.c.id).where(devices.c.group_id.in_(sorted(ids))))


def visible_device_ids(conn: sa.Connection, principal: Principal) -> frozenset[str] | None:
    """The ids of the devices the caller may see; None means all of them."""
    if visible_group_ids(principal) is None:
        return None
    return frozenset(conn.execute(sa.select(devices.c.id).where(group_filter(principal, devices.c.group_id))).scalars())


_TOKEN_MARK = " (API token "


def username_of(actor: str) -> str:
    """The user behind an audit actor; any of a user's API tokens is still that user (four-eyes approval)."""
    return actor.split(_TOKEN_MARK, 1)[0]


def change(request: Request, action: str, target_type: str, target_id: str, **kw: Any) -> Change:
    """An audit record of a change made through the API or portal by the current caller."""
    who = principal_of(request)
    actor = who.user.username + (f"{_TOKEN_MARK}{who.api_token_id})" if who.api_token_id else "")
    return Change(actor, action, target_type, target_id, source_ip=client_ip(request), **kw)
