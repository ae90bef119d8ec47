"""Event sources (Windows event shippers) and the devices their hosts become."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from vigil.app.ports import AuditRecord
from vigil.app.shippers import ShippedHost, Source
from vigil.store import audit
from vigil.store.devices import aware, ensure_default_group, reassign_devices
from vigil.store.schema import devices, event_sources
from vigil.store.secrets import digest

src = event_sources


def _source(row: Any) -> Source:
    return Source(int(row.id), row.name, row.created_by, aware(row.created_at),
                  aware(row.revoked_at) if row.revoked_at else None,
                  aware(row.last_seen_at) if row.last_seen_at else None, int(row.events))


class SqlSources:
    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def create(self, name: str, secret_hash: str, created_by: str, now: datetime) -> Source:
        res = self._c.execute(src.insert().values(name=name, secret_hash=secret_hash, created_by=created_by,
                                                  created_at=now, events=0))
        found = self.get(int(res.inserted_primary_key[0]))  # type: ignore[index]
        assert found is not None
        return found

    def named(self, name: str) -> Source | None:
        row = self._c.execute(sa.select(src).where(src.c.name == name)).first()
        return _source(row) if row else None

    def get(self, source_id: int) -> Source | None:
        row = self._c.execute(sa.select(src).where(src.c.id == source_id)).first()
        return _source(row) if row else None

    def listing(self) -> Sequence[Source]:
        return [_source(r) for r in self._c.execute(sa.select(src).order_by(src.c.id))]

    def by_secret(self, secret_hash: str) -> Source | None:
        row = self._c.execute(sa.select(src).where(src.c.secret_hash == secret_hash)).first()
        return _source(row) if row else None

    def revoke(self, source_id: int, now: datetime) -> bool:
        return bool(self._c.execute(src.update().where(src.c.id == source_id, src.c.revoked_at.is_(None))
                                    .values(revoked_at=now)).rowcount)

    def seen(self, source_id: int, events: int, now: datetime) -> None:
        self._c.execute(src.update().where(src.c.id == source_id).values(last_seen_at=now,
                                                                         events=src.c.events + events))

    def ensure_device(self, host: ShippedHost, now: datetime) -> None:
        facts = {"computer_dns_name": host.name, "os_platform": host.os_platform, "last_seen": now}
        if host.os_version:
            facts["os_version"] = host.os_version
        if host.os_build:
            facts["os_build"] = host.os_build
        if self._c.execute(sa.select(devices.c.id).where(devices.c.id == host.device_id)).first():
            self._c.execute(devices.update().where(devices.c.id == host.device_id).values(**facts))
            return
        self._c.execute(devices.insert().values(
            id=host.device_id, os_version=host.os_version, os_build=host.os_build, agent_version=host.shipper[:32],
            machine_id="", group_id=ensure_default_group(self._c, now), tags=[], agent_tags=[],
            # No agent holds a credential for a shipped host: a random hash no secret matches.
            credential_hash=digest(secrets.token_urlsafe(32)), first_seen=now, last_ip=None, last_external_ip=None,
            counters={}, sensors={}, identity_established_at=now,
            **{k: v for k, v in facts.items() if k not in ("os_version", "os_build")},
        ))
        reassign_devices(self._c, [host.device_id])

    def audit(self, record: AuditRecord, now: datetime) -> None:
        audit.append(self._c, audit.Change(record.actor, record.action, record.target_type, record.target_id,
                                           before=record.before, after=record.after, reason=record.reason,
                                           source_ip=record.source_ip), now)


class SqlSourceStore:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @contextmanager
    def begin(self) -> Iterator[SqlSources]:
        with self.engine.begin() as conn:
            yield SqlSources(conn)
