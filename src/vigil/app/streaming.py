"""Streaming export to SIEMs: configure destinations (permission: manage security settings) and read their health.

The exporters themselves live in ``vigil.integrations`` (an edge); this service gets their catalogue injected,
to check a destination's settings and to know which of them are secrets, which it stores and never shows back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from vigil.app.errors import InvalidInput, NotFound
from vigil.app.ports import AuditRecord
from vigil.app.principal import Principal
from vigil.core.clock import Clock
from vigil.core.rbac import Permission
from vigil.core.telemetry import TABLES

MANAGE = Permission.MANAGE_SECURITY_SETTINGS
ALERTS = "AlertInfo"
MASK = "********"


def exportable_tables() -> tuple[str, ...]:
    return (*TABLES, ALERTS)


@dataclass(frozen=True)
class NewDestination:
    name: str
    kind: str
    settings: Mapping[str, Any]
    tables: tuple[str, ...]
    enabled: bool
    created_by: str


@dataclass(frozen=True)
class Destination:
    id: int
    name: str
    kind: str
    settings: Mapping[str, Any]
    tables: tuple[str, ...]
    enabled: bool
    created_by: str
    created_at: datetime
    cursor: int
    sent: int = 0
    failed: int = 0
    attempts: int = 0
    last_error: str | None = None
    last_error_at: datetime | None = None
    last_sent_at: datetime | None = None
    next_attempt_at: datetime | None = None


@dataclass(frozen=True)
class Health:
    """A destination as the status views show it: secrets masked, lag in outbox batches behind the newest."""

    destination: Destination
    lag: int
    settings: Mapping[str, Any] = field(default_factory=dict)


class Catalogue(Protocol):
    def kinds(self) -> Sequence[str]: ...

    def check(self, kind: str, settings: Mapping[str, Any]) -> None:
        """Raise ValueError (with a ``field`` attribute naming the setting) for bad settings."""
        ...

    def secret_fields(self, kind: str) -> Sequence[str]: ...


class DestinationUnit(Protocol):
    def listing(self) -> Sequence[Destination]: ...
    def get(self, dest_id: int) -> Destination | None: ...
    def named(self, name: str) -> Destination | None: ...
    def create(self, new: NewDestination, now: datetime) -> Destination: ...
    def set_enabled(self, dest_id: int, enabled: bool) -> None: ...
    def delete(self, dest_id: int) -> None: ...
    def head(self) -> int: ...
    def audit(self, record: AuditRecord, now: datetime) -> None: ...


class DestinationStore(Protocol):
    def begin(self) -> AbstractContextManager[DestinationUnit]: ...


def masked(d: Destination, catalogue: Catalogue) -> dict[str, Any]:
    secrets = set(catalogue.secret_fields(d.kind)) if d.kind in catalogue.kinds() else set()
    return {k: (MASK if k in secrets else v) for k, v in d.settings.items()}


def _summary(d: Destination, catalogue: Catalogue) -> dict[str, Any]:
    return {"name": d.name, "kind": d.kind, "tables": list(d.tables), "enabled": d.enabled,
            "settings": masked(d, catalogue)}


def create(store: DestinationStore, clock: Clock, who: Principal, catalogue: Catalogue, name: str, kind: str,
           settings: Mapping[str, Any], tables: Sequence[str], enabled: bool = True) -> Health:
    """A destination that receives the chosen tables' records stored from now on."""
    who.require(MANAGE)
    name = name.strip()
    if not name:
        raise InvalidInput("name: must not be empty", field="name")
    if kind not in catalogue.kinds():
        raise InvalidInput(f"kind: unknown exporter {kind!r}; known: {', '.join(catalogue.kinds())}", field="kind")
    if not tables:
        raise InvalidInput("tables: choose at least one table", field="tables")
    known = exportable_tables()
    for i, t in enumerate(tables):
        if t not in known:
            raise InvalidInput(f"tables[{i}]: unknown table {t!r}; known: {', '.join(known)}", field=f"tables[{i}]")
    try:
        catalogue.check(kind, settings)
    except ValueError as e:
        raise InvalidInput(str(e), field=getattr(e, "field", "settings")) from None
    now = clock.now()
    with store.begin() as uow:
        if uow.named(name) is not None:
            raise InvalidInput(f"name: a destination named {name!r} exists", field="name")
        d = uow.create(NewDestination(name, kind, dict(settings), tuple(dict.fromkeys(tables)), enabled, who.actor),
                       now)
        uow.audit(AuditRecord(who.actor, "streaming.create", "export_destination", str(d.id),
                              after=_summary(d, catalogue), source_ip=who.source_ip), now)
        return Health(d, 0, masked(d, catalogue))


def listing(store: DestinationStore, who: Principal, catalogue: Catalogue) -> list[Health]:
    who.require(MANAGE)
    with store.begin() as uow:
        newest = uow.head()
        return [Health(d, max(0, newest - d.cursor), masked(d, catalogue)) for d in uow.listing()]


def _find(uow: DestinationUnit, ref: str) -> Destination:
    d = uow.get(int(ref)) if ref.isdigit() else uow.named(ref)
    if d is None:
        raise NotFound(f"no streaming destination {ref!r}", field="id")
    return d


def set_enabled(store: DestinationStore, clock: Clock, who: Principal, catalogue: Catalogue, ref: str,
                enabled: bool) -> Health:
    who.require(MANAGE)
    now = clock.now()
    with store.begin() as uow:
        d = _find(uow, ref)
        if d.enabled != enabled:
            uow.set_enabled(d.id, enabled)
            uow.audit(AuditRecord(who.actor, "streaming.enable" if enabled else "streaming.disable",
                                  "export_destination", str(d.id), before={"enabled": d.enabled},
                                  after={"enabled": enabled}, source_ip=who.source_ip), now)
        changed = uow.get(d.id)
        assert changed is not None
        return Health(changed, max(0, uow.head() - changed.cursor), masked(changed, catalogue))


def delete(store: DestinationStore, clock: Clock, who: Principal, catalogue: Catalogue, ref: str) -> None:
    who.require(MANAGE)
    now = clock.now()
    with store.begin() as uow:
        d = _find(uow, ref)
        uow.delete(d.id)
        uow.audit(AuditRecord(who.actor, "streaming.delete", "export_destination", str(d.id),
                              before=_summary(d, catalogue), source_ip=who.source_ip), now)
