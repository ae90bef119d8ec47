"""Accounts: local users with argon2-hashed passwords, users from single sign-on, basic-mode roles."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from vigil.core.rbac import BasicRole
from vigil.store.devices import aware
from vigil.store.schema import users

_hasher = PasswordHasher()
# Verifying against this when the user does not exist keeps the timing the same either way.
_DUMMY = _hasher.hash("vigil-no-such-user")
# Users from single sign-on have no password; this is not an argon2 hash, so it never verifies.
_NO_PASSWORD = "!sso"


@dataclass(frozen=True)
class User:
    id: int
    username: str
    role: BasicRole
    email: str | None = None
    source: str = "local"
    totp_enabled: bool = False
    mfa_grace_started_at: datetime | None = None


class UserExists(ValueError):
    pass


def _user(row: sa.Row) -> User:  # type: ignore[type-arg]
    grace = aware(row.mfa_grace_started_at) if row.mfa_grace_started_at is not None else None
    return User(int(row.id), row.username, BasicRole(row.role), row.email, row.source,
                row.totp_enabled_at is not None, grace)


def create_user(
    conn: sa.Connection, username: str, password: str, role: BasicRole, now: datetime, email: str | None = None
) -> User:
    if conn.execute(sa.select(users.c.id).where(users.c.username == username)).first():
        raise UserExists(f"user {username!r} already exists")
    res = conn.execute(
        users.insert().values(
            username=username, password_hash=_hasher.hash(password), role=role.value, created_at=now,
            disabled=False, email=email, source="local", password_changed_at=now,
        )
    )
    return User(int(res.inserted_primary_key[0]), username, role, email)  # type: ignore[index]


def upsert_sso_user(
    conn: sa.Connection, subject: str, username: str, email: str | None, now: datetime, *, create: bool = True
) -> User | None:
    """The user an identity provider vouches for; created read-only on first sign-in (when ``create``).

    None when the user is disabled, or unknown and ``create`` is off.
    """
    row = conn.execute(sa.select(users).where(users.c.oidc_subject == subject)).first()
    if row is None and not create:
        return None
    if row is None:
        name = username
        if conn.execute(sa.select(users.c.id).where(users.c.username == name)).first():
            name = f"{username}@sso"  # never take over a local account of the same name
        conn.execute(
            users.insert().values(
                username=name, password_hash=_NO_PASSWORD, role=BasicRole.READ_ONLY.value, created_at=now,
                disabled=False, email=email, source="oidc", oidc_subject=subject,
            )
        )
        row = conn.execute(sa.select(users).where(users.c.oidc_subject == subject)).one()
    elif email and row.email != email:
        conn.execute(users.update().where(users.c.id == row.id).values(email=email))
        row = conn.execute(sa.select(users).where(users.c.id == row.id)).one()
    return None if row.disabled else _user(row)


def verify_login(conn: sa.Connection, username: str, password: str) -> User | None:
    row = conn.execute(sa.select(users).where(users.c.username == username)).first()
    try:
        _hasher.verify(row.password_hash if row and row.source == "local" else _DUMMY, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None or row.disabled or row.source != "local":
        return None
    return _user(row)


def set_password(conn: sa.Connection, user_id: int, password: str, now: datetime) -> None:
    """Replace a local user's password (the caller checked it against the policy and revokes the sessions)."""
    conn.execute(users.update().where(users.c.id == user_id, users.c.source == "local")
                 .values(password_hash=_hasher.hash(password), password_changed_at=now))


def password_matches(conn: sa.Connection, user_id: int, password: str) -> bool:
    """Whether ``password`` is the local user's own: asked again before a change to the account's security."""
    row = conn.execute(sa.select(users.c.password_hash, users.c.source).where(users.c.id == user_id)).first()
    try:
        return bool(row and row.source == "local" and _hasher.verify(row.password_hash, password))
    except (VerificationError, InvalidHashError):
        return False


def get_user(conn: sa.Connection, user_id: int) -> User | None:
    row = conn.execute(sa.select(users).where(users.c.id == user_id)).first()
    if row is None or row.disabled:
        return None
    return _user(row)


def get_user_by_name(conn: sa.Connection, username: str) -> User | None:
    row = conn.execute(sa.select(users).where(users.c.username == username)).first()
    return None if row is None or row.disabled else _user(row)


def find_user(conn: sa.Connection, username: str) -> tuple[User, bool] | None:
    """The user by name with whether it is disabled: get_user_by_name hides disabled accounts (sign-in must not
    see them), but an administrator must still reach one to enable it, reset it or change its groups."""
    row = conn.execute(sa.select(users).where(users.c.username == username)).first()
    return None if row is None else (_user(row), bool(row.disabled))


def list_users(conn: sa.Connection) -> list[tuple[User, bool]]:
    """Every user with whether it is disabled."""
    return [(_user(r), bool(r.disabled)) for r in conn.execute(sa.select(users).order_by(users.c.username))]


def update_user(
    conn: sa.Connection, user_id: int, *, role: BasicRole | None = None, email: str | None = None,
    disabled: bool | None = None,
) -> None:
    values: dict[str, object] = {}
    if role is not None:
        values["role"] = role.value
    if email is not None:
        values["email"] = email
    if disabled is not None:
        values["disabled"] = disabled
    if values:
        conn.execute(users.update().where(users.c.id == user_id).values(**values))


def count_users(conn: sa.Connection) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(users)).scalar_one())
