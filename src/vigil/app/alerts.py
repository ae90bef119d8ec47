"""Alerts: the scoped queue, one alert with its notes, and updating one (status, assignment, classification)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from vigil.app.errors import InvalidInput, NotFound
from vigil.app.paging import Page, PageRequest
from vigil.app.ports import AlertNote, AlertQuery, AlertRecord, AlertUpdate, AuditRecord, Store
from vigil.app.principal import Principal
from vigil.core.alerts import AlertStatus, Classification, Determination
from vigil.core.clock import Clock
from vigil.core.rbac import Permission
from vigil.core.severity import Severity

# Defender's queue shows the last 30 days.
QUEUE_WINDOW = timedelta(days=30)
MAX_LIMIT = 10_000
_FIELDS = ("status", "assigned_to", "classification", "determination")


@dataclass(frozen=True)
class Alert:
    record: AlertRecord
    notes: tuple[AlertNote, ...] = ()


def _one_of(value: str | None, allowed: type[AlertStatus | Classification | Determination | Severity],
            name: str) -> None:
    if value is not None and value not in {m.value for m in allowed}:
        raise InvalidInput(f"{name}: use one of {', '.join(m.value for m in allowed)}", field=name)


def list_alerts(
    store: Store, clock: Clock, who: Principal, *, machine_id: str | None = None, status: str | None = None,
    severity: str | None = None, incident_id: int | None = None, limit: int = 1000,
) -> list[AlertRecord]:
    """The caller's alerts of the last 30 days, newest first; only those on devices in their groups."""
    who.require(Permission.VIEW_DATA_SECOPS)
    _one_of(status, AlertStatus, "status")
    _one_of(severity, Severity, "severity")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"$top: between 1 and {MAX_LIMIT}", field="$top")
    q = AlertQuery(machine_id, status, severity, incident_id, clock.now() - QUEUE_WINDOW, limit)
    with store.begin() as uow:
        return list(uow.alerts.query(q, who.device_group_ids))


ALERT_SORTS = ("lastActivity", "severity", "title", "status", "events", "created")


def page_alerts(
    store: Store, clock: Clock, who: Principal, req: PageRequest, *, machine_id: str | None = None,
    status: str | None = None, severity: str | None = None,
) -> Page[AlertRecord]:
    """One page of the caller's queue (the last 30 days), paged, sorted and searched by the store."""
    who.require(Permission.VIEW_DATA_SECOPS)
    _one_of(status, AlertStatus, "status")
    _one_of(severity, Severity, "severity")
    req = req.checked(ALERT_SORTS)
    q = AlertQuery(machine_id, status, severity, None, clock.now() - QUEUE_WINDOW)
    with store.begin() as uow:
        return uow.alerts.page(q, who.device_group_ids, req)


def get_alert(store: Store, clock: Clock, who: Principal, alert_id: str) -> Alert:
    """One alert with its comments and history; an alert on a device the caller may not see is not found."""
    who.require(Permission.VIEW_DATA_SECOPS)
    with store.begin() as uow:
        a = uow.alerts.get(alert_id, who.device_group_ids)
        if a is None:
            raise NotFound(f"no alert with id {alert_id!r}", field="id")
        return Alert(a, tuple(uow.alerts.notes(alert_id)))


def update_alert(store: Store, clock: Clock, who: Principal, alert_id: str, change: AlertUpdate) -> Alert:
    """Defender's update-alert: each changed property noted in the alert's history, the change audited once."""
    who.require(Permission.ALERTS_INVESTIGATION)
    _one_of(change.status, AlertStatus, "status")
    _one_of(change.classification, Classification, "classification")
    _one_of(change.determination, Determination, "determination")
    now = clock.now()
    with store.begin() as uow:
        a = uow.alerts.get(alert_id, who.device_group_ids)
        if a is None:
            raise NotFound(f"no alert with id {alert_id!r}", field="id")
        changed = [f for f in _FIELDS if getattr(change, f) is not None and getattr(change, f) != getattr(a, f)]
        if changed or change.comment:
            uow.alerts.update(alert_id, change, who.username or who.actor, now)
            uow.audit.append(AuditRecord(
                who.actor, "alert.update", "alert", alert_id,
                before={f: getattr(a, f) for f in changed}, after={f: getattr(change, f) for f in changed},
                reason=change.comment, source_ip=who.source_ip,
            ), now)
        after = uow.alerts.get(alert_id, None)
        if after is None:  # deleted within this transaction: nothing does that, but never return a stale alert
            raise NotFound(f"no alert with id {alert_id!r}", field="id")
        return Alert(after, tuple(uow.alerts.notes(alert_id)))
