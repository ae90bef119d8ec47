"""Portal sessions and API tokens: random secrets stored only as hashes, with expiry and revocation."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from vigil.core.rbac import Permission
from vigil.store.devices import aware
from vigil.store.schema import api_tokens, sessions
from vigil.store.secrets import digest, new_secret

API_TOKEN_PREFIX = "vgt_"


def open_session(conn: sa.Connection, user_id: int, now: datetime, expires_at: datetime, ip: str | None) -> str:
    """A new session id; a fresh one at every sign-in is what defeats session fixation."""
    sid = secrets.token_urlsafe(32)
    conn.execute(
        sessions.insert().values(id_hash=digest(sid), user_id=user_id, created_at=now, expires_at=expires_at, ip=ip)
    )
    return sid


def session_user(conn: sa.Connection, sid: str, now: datetime) -> int | None:
    row = conn.execute(
        sa.select(sessions.c.user_id, sessions.c.expires_at, sessions.c.revoked_at)
        .where(sessions.c.id_hash == digest(sid))
    ).first()
    if row is None or row.revoked_at is not None or aware(row.expires_at) <= now:
        return None
    return int(row.user_id)


def close_session(conn: sa.Connection, sid: str, now: datetime) -> None:
    conn.execute(
        sessions.update().where(sessions.c.id_hash == digest(sid), sessions.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def close_user_sessions(conn: sa.Connection, user_id: int, now: datetime) -> None:
    conn.execute(
        sessions.update().where(sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None)).values(revoked_at=now)
    )


@dataclass(frozen=True)
class ApiToken:
    id: int
    name: str
    user_id: int
    scopes: frozenset[Permission]
    created_at: datetime
    expires_at: datetime
    revoked: bool


def _token(row: Any) -> ApiToken:
    return ApiToken(
        int(row.id), row.name, int(row.user_id), frozenset(Permission(s) for s in row.scopes),
        aware(row.created_at), aware(row.expires_at), row.revoked_at is not None,
    )


def create_api_token(
    conn: sa.Connection, *, user_id: int, name: str, scopes: frozenset[Permission], expires_at: datetime,
    now: datetime,
) -> tuple[ApiToken, str]:
    """Returns the token record and its secret, which is shown once and stored only as a hash."""
    secret = new_secret(API_TOKEN_PREFIX)
    res = conn.execute(
        api_tokens.insert().values(
            name=name, token_hash=digest(secret), user_id=user_id, scopes=sorted(s.value for s in scopes),
            created_at=now, expires_at=expires_at,
        )
    )
    tid = int(res.inserted_primary_key[0])  # type: ignore[index]
    return ApiToken(tid, name, user_id, scopes, now, expires_at, False), secret


def api_token_by_secret(conn: sa.Connection, secret: str, now: datetime) -> ApiToken | None:
    """The live token behind ``secret``; None when unknown, revoked or expired."""
    row = conn.execute(sa.select(api_tokens).where(api_tokens.c.token_hash == digest(secret))).first()
    if row is None or row.revoked_at is not None or aware(row.expires_at) <= now:
        return None
    conn.execute(api_tokens.update().where(api_tokens.c.id == row.id).values(last_used_at=now))
    return _token(row)


def list_api_tokens(conn: sa.Connection, user_id: int | None = None) -> list[ApiToken]:
    q = sa.select(api_tokens).order_by(api_tokens.c.id)
    if user_id is not None:
        q = q.where(api_tokens.c.user_id == user_id)
    return [_token(r) for r in conn.execute(q)]


def revoke_api_token(conn: sa.Connection, token_id: int, now: datetime, user_id: int | None = None) -> bool:
    q = api_tokens.update().where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
    if user_id is not None:
        q = q.where(api_tokens.c.user_id == user_id)
    return bool(conn.execute(q.values(revoked_at=now)).rowcount)
