"""Incident records: alerts correlated by device and shared entities; merge and split by hand."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from vigil.core.incidents import (
    ENTITY_WINDOW,
    Entity,
    EntityKind,
    IncidentStatus,
    IncidentView,
    entities_of,
    find_incident,
    incident_name,
    max_severity,
)
from vigil.store.devices import aware
from vigil.store.errors import InvalidChange
from vigil.store.schema import alerts, devices, incidents


class IncidentError(InvalidChange):
    """A merge or split that cannot be done; the message says why."""


def _entities(raw: Iterable[Any]) -> frozenset[Entity]:
    return frozenset(Entity(EntityKind(k), v) for k, v in raw)


def _dump(entities: Iterable[Entity]) -> list[list[str]]:
    return sorted([e.kind.value, e.value] for e in entities)


def _open_views(conn: sa.Connection, since: datetime) -> list[IncidentView]:
    rows = conn.execute(
        sa.select(incidents.c.id, incidents.c.device_ids, incidents.c.entities, incidents.c.last_activity).where(
            incidents.c.status == IncidentStatus.ACTIVE.value, incidents.c.last_activity >= since
        )
    )
    return [
        IncidentView(r.id, frozenset(r.device_ids), _entities(r.entities), aware(r.last_activity)) for r in rows
    ]


def refresh(conn: sa.Connection, incident_id: int, now: datetime) -> None:
    """Recompute an incident's name, severity, devices, entities and activity from its alerts."""
    rows = conn.execute(
        sa.select(
            alerts.c.severity, alerts.c.category, alerts.c.detection_source, alerts.c.machine_id,
            alerts.c.evidence, alerts.c.last_event_time, devices.c.computer_dns_name,
        )
        .outerjoin(devices, devices.c.id == alerts.c.machine_id)  # an identity alert has no device
        .where(alerts.c.incident_id == incident_id)
    ).all()
    if not rows:
        conn.execute(
            incidents.update().where(incidents.c.id == incident_id)
            .values(status=IncidentStatus.RESOLVED.value, last_update_time=now)
        )
        return
    ents: set[Entity] = set()
    for r in rows:
        ents |= entities_of(r.evidence)
    conn.execute(
        incidents.update().where(incidents.c.id == incident_id).values(
            name=incident_name([r.category for r in rows], [r.computer_dns_name for r in rows if r.machine_id],
                               [r.detection_source for r in rows]),
            severity=max_severity(r.severity for r in rows),
            device_ids=sorted({r.machine_id for r in rows if r.machine_id}),
            entities=_dump(ents),
            last_activity=max(aware(r.last_event_time) for r in rows),
            last_update_time=now,
        )
    )


def correlate(conn: sa.Connection, alert_id: str, now: datetime) -> int:
    """Put a new alert into the incident it belongs to, opening one if none fits; returns its id."""
    a = conn.execute(
        sa.select(alerts.c.machine_id, alerts.c.evidence, alerts.c.last_event_time).where(alerts.c.id == alert_id)
    ).one()
    event_time = aware(a.last_event_time)
    found = find_incident(_open_views(conn, event_time - ENTITY_WINDOW), a.machine_id, entities_of(a.evidence),
                          event_time)
    if found is None:
        res = conn.execute(
            incidents.insert().values(
                name="Incident", status=IncidentStatus.ACTIVE.value, severity="Informational",
                created_time=now, last_update_time=now, last_activity=event_time, device_ids=[], entities=[],
            )
        )
        incident_id = int(res.inserted_primary_key[0])  # type: ignore[index]
    else:
        incident_id = found.id
    conn.execute(alerts.update().where(alerts.c.id == alert_id).values(incident_id=incident_id))
    refresh(conn, incident_id, now)
    return incident_id


def merge(conn: sa.Connection, target: int, others: list[int], now: datetime) -> None:
    """Move the alerts of ``others`` into ``target``; the others are marked Redirected."""
    ids = {target, *others}
    found = {r.id for r in conn.execute(sa.select(incidents.c.id).where(incidents.c.id.in_(ids)))}
    missing = sorted(ids - found)
    if missing:
        raise IncidentError(f"no incident with id {missing[0]}")
    if target in others or not others:
        raise IncidentError("name one or more other incidents to merge into this one")
    conn.execute(alerts.update().where(alerts.c.incident_id.in_(others)).values(incident_id=target))
    conn.execute(
        incidents.update().where(incidents.c.id.in_(others)).values(
            status=IncidentStatus.REDIRECTED.value, redirect_incident_id=target, last_update_time=now
        )
    )
    refresh(conn, target, now)


def split(conn: sa.Connection, source: int, alert_ids: list[str], now: datetime) -> int:
    """Move ``alert_ids`` out of ``source`` into a new incident; returns the new incident's id."""
    owned = {
        r.id for r in conn.execute(
            sa.select(alerts.c.id).where(alerts.c.incident_id == source, alerts.c.id.in_(alert_ids))
        )
    }
    stray = sorted(set(alert_ids) - owned)
    if stray:
        raise IncidentError(f"alert {stray[0]} is not in incident {source}")
    total = conn.execute(sa.select(sa.func.count()).where(alerts.c.incident_id == source)).scalar_one()
    if not alert_ids or len(owned) == total:
        raise IncidentError("a split must leave at least one alert in each incident")
    res = conn.execute(
        incidents.insert().values(
            name="Incident", status=IncidentStatus.ACTIVE.value, severity="Informational", created_time=now,
            last_update_time=now, last_activity=now, device_ids=[], entities=[],
        )
    )
    new_id = int(res.inserted_primary_key[0])  # type: ignore[index]
    conn.execute(alerts.update().where(alerts.c.id.in_(owned)).values(incident_id=new_id))
    refresh(conn, source, now)
    refresh(conn, new_id, now)
    return new_id


def _visible(scope: sa.ColumnElement[bool] | None) -> sa.ColumnElement[bool]:
    """Incidents with at least one alert the caller may see (``scope`` filters alerts)."""
    if scope is None:
        return sa.true()
    return sa.exists().where(alerts.c.incident_id == incidents.c.id, scope)


def visible(scope: sa.ColumnElement[bool] | None) -> sa.ColumnElement[bool]:
    """Incidents with at least one alert that ``scope`` lets through (all when it is None)."""
    return _visible(scope)


def get(conn: sa.Connection, incident_id: int, scope: sa.ColumnElement[bool] | None = None) -> sa.Row[Any] | None:
    return conn.execute(sa.select(incidents).where(incidents.c.id == incident_id, _visible(scope))).first()


def listing(
    conn: sa.Connection, *, status: str | None = None, limit: int = 1000, scope: sa.ColumnElement[bool] | None = None
) -> list[sa.Row[Any]]:
    q = sa.select(incidents).where(incidents.c.status != IncidentStatus.REDIRECTED.value, _visible(scope))
    if status:
        q = q.where(incidents.c.status == status)
    return list(conn.execute(q.order_by(incidents.c.last_activity.desc()).limit(limit)))


def update(conn: sa.Connection, incident_id: int, now: datetime, **values: Any) -> None:
    conn.execute(incidents.update().where(incidents.c.id == incident_id).values(last_update_time=now, **values))
