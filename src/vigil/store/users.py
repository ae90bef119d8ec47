"""Local accounts: argon2-hashed passwords and basic-mode roles."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from vigil.core.rbac import BasicRole
from vigil.store.schema import users

_hasher = PasswordHasher()
# Verifying against this when the user does not exist keeps the timing the same either way.
_DUMMY = _hasher.hash("vigil-no-such-user")


@dataclass(frozen=True)
class User:
    id: int
    username: str
    role: BasicRole


class UserExists(ValueError):
    pass


def create_user(conn: sa.Connection, username: str, password: str, role: BasicRole, now: datetime) -> User:
    if conn.execute(sa.select(users.c.id).where(users.c.username == username)).first():
        raise UserExists(f"user {username!r} already exists")
    res = conn.execute(
        users.insert().values(
            username=username, password_hash=_hasher.hash(password), role=role.value, created_at=now,
            disabled=False,
        )
    )
    return User(int(res.inserted_primary_key[0]), username, role)  # type: ignore[index]


def verify_login(conn: sa.Connection, username: str, password: str) -> User | None:
    row = conn.execute(sa.select(users).where(users.c.username == username)).first()
    try:
        _hasher.verify(row.password_hash if row else _DUMMY, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None or row.disabled:
        return None
    return User(int(row.id), row.username, BasicRole(row.role))


def get_user(conn: sa.Connection, user_id: int) -> User | None:
    row = conn.execute(sa.select(users).where(users.c.id == user_id)).first()
    if row is None or row.disabled:
        return None
    return User(int(row.id), row.username, BasicRole(row.role))


def count_users(conn: sa.Connection) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(users)).scalar_one())
