"""Incidents: the scoped list, one incident with its alerts, updates, merge and split; each change audited.

An incident may span device groups. A scoped caller sees it when one of its alerts is on a device they may see,
and then only that part: its devices, and entities drawn from the alerts they may see.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from vigil.app.alerts import QUEUE_WINDOW
from vigil.app.errors import InvalidInput, NotFound
from vigil.app.paging import Page, PageRequest
from vigil.app.ports import AlertQuery, AlertRecord, AuditRecord, IncidentRecord, IncidentUpdate, Store, UnitOfWork
from vigil.app.principal import Principal
from vigil.core.alerts import Classification, Determination
from vigil.core.clock import Clock
from vigil.core.incidents import IncidentStatus, entities_of
from vigil.core.rbac import Permission
from vigil.core.severity import Severity
from vigil.store.errors import InvalidChange

_FIELDS = ("status", "assigned_to", "classification", "determination")


@dataclass(frozen=True)
class Incident:
    record: IncidentRecord
    # What the caller may see of it: its devices in their groups, entities of the alerts they may see.
    machine_ids: tuple[str, ...]
    entities: tuple[tuple[str, str], ...]
    # The incident's alerts the caller may see, when asked for (one incident) or needed (a partial view).
    alerts: tuple[AlertRecord, ...] | None = None


def _view(uow: UnitOfWork, who: Principal, rec: IncidentRecord, now: datetime, with_alerts: bool) -> Incident:
    groups = who.device_group_ids
    visible = None if groups is None else {d.id for d in uow.devices.in_groups(groups)}
    partial = visible is not None and not set(rec.device_ids) <= visible
    alerts = None
    if with_alerts or partial:
        alerts = tuple(uow.alerts.query(AlertQuery(incident_id=rec.id, since=now - QUEUE_WINDOW), groups))
    entities = rec.entities
    if alerts is not None and visible is not None:
        found = entities_of(e for a in alerts for e in a.evidence)
        entities = tuple(sorted((e.kind.value, e.value) for e in found))
    machine_ids = tuple(d for d in rec.device_ids if visible is None or d in visible)
    return Incident(rec, machine_ids, entities, alerts if with_alerts else None)


def _visible(uow: UnitOfWork, who: Principal, incident_id: int) -> IncidentRecord:
    rec = uow.incidents.get(incident_id, who.device_group_ids)
    if rec is None:
        raise NotFound(f"no incident with id {incident_id}", field="id")
    return rec


def list_incidents(store: Store, clock: Clock, who: Principal, status: str | None = None) -> list[Incident]:
    who.require(Permission.VIEW_DATA_SECOPS)
    if status is not None and status not in {s.value for s in IncidentStatus}:
        raise InvalidInput(f"status: use one of {', '.join(s.value for s in IncidentStatus)}", field="status")
    now = clock.now()
    with store.begin() as uow:
        return [_view(uow, who, r, now, False) for r in uow.incidents.listing(status, who.device_group_ids)]


INCIDENT_SORTS = ("lastActivity", "severity", "name", "status", "created")


def page_incidents(
    store: Store, clock: Clock, who: Principal, req: PageRequest, status: str | None = None,
    severity: str | None = None,
) -> Page[Incident]:
    """One page of the caller's incidents, paged, sorted and searched by the store; only that page is viewed."""
    who.require(Permission.VIEW_DATA_SECOPS)
    if status is not None and status not in {s.value for s in IncidentStatus}:
        raise InvalidInput(f"status: use one of {', '.join(s.value for s in IncidentStatus)}", field="status")
    if severity is not None and severity not in {s.value for s in Severity}:
        raise InvalidInput(f"severity: use one of {', '.join(s.value for s in Severity)}", field="severity")
    req = req.checked(INCIDENT_SORTS)
    now = clock.now()
    with store.begin() as uow:
        found = uow.incidents.page(status, severity, who.device_group_ids, req)
        return Page(tuple(_view(uow, who, r, now, False) for r in found.rows), found.total)


def get_incident(store: Store, clock: Clock, who: Principal, incident_id: int) -> Incident:
    who.require(Permission.VIEW_DATA_SECOPS)
    now = clock.now()
    with store.begin() as uow:
        return _view(uow, who, _visible(uow, who, incident_id), now, True)


def update_incident(store: Store, clock: Clock, who: Principal, incident_id: int, change: IncidentUpdate) -> Incident:
    who.require(Permission.ALERTS_INVESTIGATION)
    if change.status == IncidentStatus.REDIRECTED.value:
        raise InvalidInput("status: merge incidents to redirect one", field="status")
    for name, allowed in (("status", IncidentStatus), ("classification", Classification),
                          ("determination", Determination)):
        value = getattr(change, name)
        if value is not None and value not in {m.value for m in allowed}:
            raise InvalidInput(f"{name}: use one of {', '.join(m.value for m in allowed)}", field=name)
    now = clock.now()
    with store.begin() as uow:
        rec = _visible(uow, who, incident_id)
        changed = [f for f in _FIELDS if getattr(change, f) is not None and getattr(change, f) != getattr(rec, f)]
        if changed:
            uow.incidents.update(incident_id, change, now)
            uow.audit.append(AuditRecord(
                who.actor, "incident.update", "incident", str(incident_id),
                before={f: getattr(rec, f) for f in changed}, after={f: getattr(change, f) for f in changed},
                source_ip=who.source_ip,
            ), now)
        return _view(uow, who, _visible(uow, who, incident_id), now, True)


def merge_incidents(store: Store, clock: Clock, who: Principal, target: int, others: Sequence[int]) -> Incident:
    """Move the alerts of ``others`` into ``target``; every one of them must be an incident the caller sees."""
    who.require(Permission.ALERTS_INVESTIGATION)
    now = clock.now()
    with store.begin() as uow:
        for i in (target, *others):
            _visible(uow, who, i)
        try:
            uow.incidents.merge(target, others, now)
        except InvalidChange as e:
            raise InvalidInput(str(e), field="incidentIds") from None
        uow.audit.append(AuditRecord(who.actor, "incident.merge", "incident", str(target),
                                     after={"merged": list(others)}, source_ip=who.source_ip), now)
        return _view(uow, who, _visible(uow, who, target), now, True)


def split_incident(store: Store, clock: Clock, who: Principal, source: int, alert_ids: Sequence[str]) -> Incident:
    """Move ``alert_ids`` out of ``source`` into a new incident; a scoped caller may move only alerts they see."""
    who.require(Permission.ALERTS_INVESTIGATION)
    now = clock.now()
    with store.begin() as uow:
        _visible(uow, who, source)
        if who.device_group_ids is not None and any(
                uow.alerts.get(a, who.device_group_ids) is None for a in set(alert_ids)):
            raise InvalidInput("an alert to split out is not in this incident", field="alertIds")
        try:
            new_id = uow.incidents.split(source, alert_ids, now)
        except InvalidChange as e:
            raise InvalidInput(str(e), field="alertIds") from None
        uow.audit.append(AuditRecord(who.actor, "incident.split", "incident", str(source),
                                     after={"alerts": sorted(set(alert_ids)), "newIncidentId": new_id},
                                     source_ip=who.source_ip), now)
        return _view(uow, who, _visible(uow, who, new_id), now, True)
