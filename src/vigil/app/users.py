"""Users as callers: the local operator narrowed to a Vigil user's rights (``vigil ... --as USER``)."""

from __future__ import annotations

from vigil.app.errors import NotFound
from vigil.app.ports import Store
from vigil.app.principal import Principal


def acting_as(store: Store, operator: Principal, username: str) -> Principal:
    """``operator`` with the permissions and device groups of the Vigil user ``username``, and no more.

    For scripts that should run with an analyst's rights rather than the console's: the audit log still names
    the operator (``cli:user@host (as alice)``), so a change is never attributed to a user who did not make it.
    """
    with store.begin() as uow:
        access = uow.users.access(username)
    if access is None:
        raise NotFound(f"no active user named {username!r}", field="as")
    return Principal(
        f"{operator.actor} (as {access.username})",
        access.permissions & operator.permissions,
        access.device_group_ids,
        access.is_admin and operator.is_admin,
        operator.source_ip,
        username=operator.username,
    )
