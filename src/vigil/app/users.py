"""Users: accounts (list, add, disable, reset a password; audited) and the local operator narrowed to a Vigil
user's rights (``vigil ... --as USER``)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from vigil.app.errors import InvalidInput, NotFound
from vigil.app.ports import AuditRecord, Store, UnitOfWork, UserSummary
from vigil.app.principal import Principal
from vigil.core.clock import Clock
from vigil.core.passwords import PasswordPolicy, WeakPassword, context_words
from vigil.core.rbac import BasicRole, Permission


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


_USERNAME = re.compile(r"[A-Za-z0-9._@-]{1,128}")


def _audit(uow: UnitOfWork, who: Principal, action: str, username: str, now: datetime, **kw: Any) -> None:
    uow.audit.append(AuditRecord(who.actor, action, "user", username, source_ip=who.source_ip, **kw), now)


def list_users(store: Store, who: Principal) -> list[UserSummary]:
    who.require(Permission.MANAGE_PORTAL_SETTINGS)
    with store.begin() as uow:
        return uow.users.list_all()


def add_user(store: Store, clock: Clock, who: Principal, policy: PasswordPolicy, username: str, password: str,
             role: str = BasicRole.READ_ONLY.value, email: str | None = None) -> UserSummary:
    """A local account; the password must pass the policy the server applies to every password it sets."""
    who.require(Permission.MANAGE_PORTAL_SETTINGS)
    if not _USERNAME.fullmatch(username):
        raise InvalidInput("username: 1 to 128 letters, digits, '.', '_', '@' or '-'", field="username")
    if role not in {r.value for r in BasicRole}:
        raise InvalidInput(f"role: use one of {', '.join(BasicRole)}", field="role")
    _check(policy, password, username, email)
    now = clock.now()
    with store.begin() as uow:
        made = uow.users.create(username, password, role, email, now)
        if made is None:
            raise InvalidInput(f"user {username!r} already exists", field="username")
        _audit(uow, who, "user.create", username, now, after={"role": role, "email": email})
        return made


def set_disabled(store: Store, clock: Clock, who: Principal, username: str, disabled: bool) -> UserSummary:
    """Disable an account (signed out everywhere at once) or enable it again."""
    who.require(Permission.MANAGE_PORTAL_SETTINGS)
    if disabled and username == who.username:
        raise InvalidInput("you cannot disable your own account", field="username")
    now = clock.now()
    with store.begin() as uow:
        changed = uow.users.set_disabled(username, disabled, now)
        if changed is None:
            raise NotFound(f"no user named {username!r}", field="username")
        _audit(uow, who, "user.update", username, now, after={"disabled": disabled})
        return changed


def reset_password(store: Store, clock: Clock, who: Principal, policy: PasswordPolicy, username: str,
                   password: str) -> UserSummary:
    """An administrator's reset: the new password passes the policy, and every session of the user ends."""
    who.require(Permission.MANAGE_PORTAL_SETTINGS)
    now = clock.now()
    with store.begin() as uow:
        found = next((u for u in uow.users.list_all() if u.username == username), None)
        if found is None:
            raise NotFound(f"no user named {username!r}", field="username")
        if found.source != "local":
            raise InvalidInput(f"{username} signs in through single sign-on; its password is the identity "
                               "provider's", field="username")
        _check(policy, password, username, found.email)
        uow.users.set_password(username, password, now)
        _audit(uow, who, "user.password_reset", username, now)
        return found


def _check(policy: PasswordPolicy, password: str, username: str, email: str | None) -> None:
    try:
        policy.check(password, context_words(username, email))
    except WeakPassword as e:
        raise InvalidInput(f"password: {e}", field="password") from None
