"""Windows event shippers: register a source (its secret shown once), list, revoke; authenticate a shipper's post
and make each shipped host a device in the inventory with its OS."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from vigil.app.errors import InvalidInput, NotFound
from vigil.app.ports import AuditRecord
from vigil.app.principal import Principal
from vigil.core.clock import Clock
from vigil.core.rbac import Permission

MANAGE = Permission.MANAGE_SECURITY_SETTINGS
SECRET_PREFIX = "vgi_"


@dataclass(frozen=True)
class Source:
    id: int
    name: str
    created_by: str
    created_at: datetime
    revoked_at: datetime | None = None
    last_seen_at: datetime | None = None
    events: int = 0


@dataclass(frozen=True)
class ShippedHost:
    device_id: str
    name: str
    os_platform: str
    os_version: str
    os_build: str
    shipper: str


class SourceUnit(Protocol):
    def create(self, name: str, secret_hash: str, created_by: str, now: datetime) -> Source: ...
    def named(self, name: str) -> Source | None: ...
    def get(self, source_id: int) -> Source | None: ...
    def listing(self) -> Sequence[Source]: ...
    def by_secret(self, secret_hash: str) -> Source | None: ...
    def revoke(self, source_id: int, now: datetime) -> bool: ...
    def seen(self, source_id: int, events: int, now: datetime) -> None: ...
    def ensure_device(self, host: ShippedHost, now: datetime) -> None:
        """Create the host's device (default group, then the group rules) or refresh its OS and last seen."""
        ...
    def audit(self, record: AuditRecord, now: datetime) -> None: ...


class SourceStore(Protocol):
    def begin(self) -> AbstractContextManager[SourceUnit]: ...


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()  # a 256-bit random secret, not a password


def register(store: SourceStore, clock: Clock, who: Principal, name: str) -> tuple[Source, str]:
    who.require(MANAGE)
    name = name.strip()
    if not name:
        raise InvalidInput("name: must not be empty", field="name")
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    now = clock.now()
    with store.begin() as uow:
        if uow.named(name) is not None:
            raise InvalidInput(f"name: a source named {name!r} exists", field="name")
        source = uow.create(name, _digest(secret), who.actor, now)
        uow.audit(AuditRecord(who.actor, "event_source.create", "event_source", str(source.id),
                              after={"name": name}, source_ip=who.source_ip), now)
    return source, secret


def listing(store: SourceStore, who: Principal) -> Sequence[Source]:
    who.require(MANAGE)
    with store.begin() as uow:
        return uow.listing()


def revoke(store: SourceStore, clock: Clock, who: Principal, source_id: int) -> Source:
    who.require(MANAGE)
    now = clock.now()
    with store.begin() as uow:
        if uow.get(source_id) is None:
            raise NotFound(f"no event source {source_id}", field="id")
        if uow.revoke(source_id, now):
            uow.audit(AuditRecord(who.actor, "event_source.revoke", "event_source", str(source_id),
                                  source_ip=who.source_ip), now)
        found = uow.get(source_id)
    assert found is not None
    return found


def authenticate(store: SourceStore, secret: str) -> Source | None:
    """The live source behind a shipper's secret; None when unknown or revoked."""
    if not secret.startswith(SECRET_PREFIX):
        return None
    with store.begin() as uow:
        source = uow.by_secret(_digest(secret))
    return source if source is not None and source.revoked_at is None else None


def arrived(store: SourceStore, clock: Clock, source: Source, hosts: Sequence[ShippedHost], events: int) -> None:
    """Record a post: each host a device (so it shows in the inventory with its OS), the source's counters."""
    now = clock.now()
    with store.begin() as uow:
        for host in hosts:
            uow.ensure_device(host, now)
        uow.seen(source.id, events, now)
