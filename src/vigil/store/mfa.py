"""A user's second factor: the TOTP secret and its last accepted step, recovery codes, the grace period's start."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from vigil.core.mfa import MfaPolicy, MfaStatus, normalize_recovery_code
from vigil.core.rbac import PermissionsMode
from vigil.store.rbac import get_mode
from vigil.store.schema import recovery_codes, role_user_groups, roles, user_group_members, users
from vigil.store.secrets import digest
from vigil.store.users import User


def begin_totp(conn: sa.Connection, user_id: int, secret: str) -> bool:
    """Keep ``secret`` as the user's enrolment until a code confirms it; False when TOTP is already on."""
    res = conn.execute(
        users.update().where(users.c.id == user_id, users.c.totp_enabled_at.is_(None), users.c.source == "local")
        .values(totp_secret=secret, totp_last_step=None)
    )
    return bool(res.rowcount)


def totp_secret(conn: sa.Connection, user_id: int, *, enabled: bool) -> str | None:
    """The secret of the confirmed second factor (``enabled``), or of the enrolment in progress."""
    row = conn.execute(sa.select(users.c.totp_secret, users.c.totp_enabled_at).where(users.c.id == user_id)).first()
    if row is None or row.totp_secret is None or (row.totp_enabled_at is not None) != enabled:
        return None
    return str(row.totp_secret)


def accept_step(conn: sa.Connection, user_id: int, step: int) -> bool:
    """Spend time step ``step``: True once; a replayed code (this step or an earlier one) finds nothing to update.

    The guarded UPDATE is what makes two requests racing with the same code see one success.
    """
    res = conn.execute(
        users.update()
        .where(users.c.id == user_id, sa.or_(users.c.totp_last_step.is_(None), users.c.totp_last_step < step))
        .values(totp_last_step=step)
    )
    return bool(res.rowcount)


def enable_totp(conn: sa.Connection, user_id: int, now: datetime, codes: list[str]) -> None:
    """Confirm the enrolment and give the user a fresh set of recovery codes."""
    conn.execute(users.update().where(users.c.id == user_id).values(totp_enabled_at=now))
    replace_recovery_codes(conn, user_id, codes, now)


def disable_totp(conn: sa.Connection, user_id: int) -> bool:
    """Remove the second factor and its recovery codes; False when there was none (not even pending)."""
    res = conn.execute(
        users.update().where(users.c.id == user_id, users.c.totp_secret.is_not(None))
        .values(totp_secret=None, totp_enabled_at=None, totp_last_step=None)
    )
    conn.execute(recovery_codes.delete().where(recovery_codes.c.user_id == user_id))
    return bool(res.rowcount)


def replace_recovery_codes(conn: sa.Connection, user_id: int, codes: list[str], now: datetime) -> None:
    conn.execute(recovery_codes.delete().where(recovery_codes.c.user_id == user_id))
    for code in codes:
        conn.execute(recovery_codes.insert().values(
            user_id=user_id, code_hash=digest(normalize_recovery_code(code)), created_at=now))


def use_recovery_code(conn: sa.Connection, user_id: int, code: str, now: datetime) -> bool:
    """Spend one recovery code: True once, False when unknown, another user's or already used."""
    res = conn.execute(
        recovery_codes.update()
        .where(recovery_codes.c.user_id == user_id, recovery_codes.c.used_at.is_(None),
               recovery_codes.c.code_hash == digest(normalize_recovery_code(code)))
        .values(used_at=now)
    )
    return bool(res.rowcount)


def recovery_codes_left(conn: sa.Connection, user_id: int) -> int:
    return int(conn.execute(
        sa.select(sa.func.count()).select_from(recovery_codes)
        .where(recovery_codes.c.user_id == user_id, recovery_codes.c.used_at.is_(None))
    ).scalar_one())


def start_grace(conn: sa.Connection, user_id: int, now: datetime) -> None:
    """The grace period starts once, at the first sign-in that required a second factor."""
    conn.execute(users.update().where(users.c.id == user_id, users.c.mfa_grace_started_at.is_(None))
                 .values(mfa_grace_started_at=now))


def role_names(conn: sa.Connection, user: User) -> set[str]:
    """The role names the MFA policy matches: the basic role, and in RBAC mode the roles of the user's groups."""
    names = {user.role.value}
    if get_mode(conn) is PermissionsMode.RBAC:
        names |= {r.name for r in conn.execute(
            sa.select(roles.c.name).select_from(user_group_members)
            .join(role_user_groups, role_user_groups.c.user_group_id == user_group_members.c.user_group_id)
            .join(roles, roles.c.id == role_user_groups.c.role_id)
            .where(user_group_members.c.user_id == user.id)
        )}
    return names


def mfa_status(conn: sa.Connection, user: User, policy: MfaPolicy, now: datetime) -> MfaStatus:
    """Where ``user`` stands against the policy; single sign-on users are out of scope (their IdP's MFA applies)."""
    if user.source != "local":
        return policy.status((), False, None, now)
    names = role_names(conn, user) if policy.required_roles else set()
    return policy.status(names, user.totp_enabled, user.mfa_grace_started_at, now)
