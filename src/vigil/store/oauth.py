"""OAuth2 client-credentials applications and their access tokens: secrets stored only as hashes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from vigil.app.applications import Application, AppToken
from vigil.app.ports import AuditRecord
from vigil.store import audit
from vigil.store.devices import aware
from vigil.store.schema import oauth_applications as apps
from vigil.store.schema import oauth_tokens as tokens


def _app(row: Any) -> Application:
    return Application(
        id=int(row.id), name=row.name, client_id=row.client_id, roles=frozenset(row.roles),
        created_by=row.created_by, created_at=aware(row.created_at), secret_expires_at=aware(row.secret_expires_at),
        revoked_at=aware(row.revoked_at) if row.revoked_at else None,
        last_token_at=aware(row.last_token_at) if row.last_token_at else None,
    )


class SqlApplications:
    """``vigil.app.applications.ApplicationUnit`` on one connection."""

    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def create(self, app: Application, secret_hash: str) -> Application:
        res = self._c.execute(apps.insert().values(
            name=app.name, client_id=app.client_id, secret_hash=secret_hash, roles=sorted(app.roles),
            created_by=app.created_by, created_at=app.created_at, secret_expires_at=app.secret_expires_at,
        ))
        return _app(self._c.execute(sa.select(apps).where(apps.c.id == res.inserted_primary_key[0])).one())  # type: ignore[index]

    def named(self, name: str) -> Application | None:
        row = self._c.execute(sa.select(apps).where(apps.c.name == name)).first()
        return _app(row) if row else None

    def get(self, app_id: int) -> Application | None:
        row = self._c.execute(sa.select(apps).where(apps.c.id == app_id)).first()
        return _app(row) if row else None

    def listing(self) -> Sequence[Application]:
        return [_app(r) for r in self._c.execute(sa.select(apps).order_by(apps.c.id))]

    def with_secret(self, client_id: str) -> tuple[Application, str] | None:
        row = self._c.execute(sa.select(apps).where(apps.c.client_id == client_id)).first()
        return (_app(row), str(row.secret_hash)) if row else None

    def revoke(self, app_id: int, now: datetime) -> bool:
        done = self._c.execute(apps.update().where(apps.c.id == app_id, apps.c.revoked_at.is_(None))
                               .values(revoked_at=now)).rowcount
        # Its tokens go with it: a token issued before the revocation must not outlive it.
        self._c.execute(tokens.delete().where(tokens.c.app_id == app_id))
        return bool(done)

    def add_token(self, token: AppToken, token_hash: str) -> None:
        self._c.execute(tokens.delete().where(tokens.c.expires_at <= token.issued_at))  # expired ones, in passing
        self._c.execute(tokens.insert().values(token_hash=token_hash, app_id=token.app_id, roles=sorted(token.roles),
                                               issued_at=token.issued_at, expires_at=token.expires_at))
        self._c.execute(apps.update().where(apps.c.id == token.app_id).values(last_token_at=token.issued_at))

    def token(self, token_hash: str) -> tuple[AppToken, Application] | None:
        row = self._c.execute(
            sa.select(tokens, apps.c.name).join(apps, apps.c.id == tokens.c.app_id)
            .where(tokens.c.token_hash == token_hash)
        ).first()
        if row is None:
            return None
        app = self.get(int(row.app_id))
        assert app is not None  # the foreign key holds it
        return AppToken(int(row.app_id), frozenset(row.roles), aware(row.issued_at), aware(row.expires_at)), app

    def audit(self, record: AuditRecord, now: datetime) -> None:
        audit.append(self._c, audit.Change(record.actor, record.action, record.target_type, record.target_id,
                                           before=record.before, after=record.after, reason=record.reason,
                                           source_ip=record.source_ip), now)


class SqlApplicationStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @contextmanager
    def begin(self) -> Iterator[SqlApplications]:
        with self.engine.begin() as conn:
            yield SqlApplications(conn)
