"""Lists paged in the database: the search words, the sort and the page become WHERE, ORDER BY and
LIMIT/OFFSET, and a COUNT gives the whole list's size. The alert, device, incident and audit queries the
portal pages through (``vigil.app.paging``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from vigil.app.paging import PageRequest
from vigil.core.incidents import IncidentStatus
from vigil.store.schema import alerts, audit_log, device_groups, devices, incidents

# Severity in its order of weight (a text column would sort High < Informational < Low < Medium).
_SEVERITY_RANK = {"Informational": 0, "Low": 1, "Medium": 2, "High": 3}


def _like(word: str) -> str:
    return "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _text(col: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
    return sa.func.lower(sa.cast(col, sa.String))


def searched(q: sa.Select[Any], words: Sequence[str], fields: Sequence[sa.ColumnElement[Any]]) -> sa.Select[Any]:
    """Each word in one of ``fields`` (case-insensitive, anywhere in its text); JSON columns as their text."""
    for w in words:
        pattern = _like(w.lower())
        q = q.where(sa.or_(*(_text(f).like(pattern, escape="\\") for f in fields)))
    return q


def page_rows(
    conn: sa.Connection, q: sa.Select[Any], req: PageRequest, sorts: Mapping[str, sa.ColumnElement[Any]],
    fields: Sequence[sa.ColumnElement[Any]], ident: sa.ColumnElement[Any],
) -> tuple[list[sa.Row[Any]], int]:
    """One page of ``q`` and the count of every row it matches, searched and sorted (NULLs last, ties by id)."""
    q = searched(q, req.words, fields)
    total = int(conn.execute(sa.select(sa.func.count()).select_from(q.order_by(None).subquery())).scalar_one())
    key = sorts[req.sort]
    order = [sa.nulls_last(key.desc() if req.desc else key.asc()), ident.desc() if req.desc else ident.asc()]
    rows = list(conn.execute(q.order_by(*order).offset(req.offset).limit(req.size)))
    return rows, total


def severity_rank(col: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    return sa.case(_SEVERITY_RANK, value=col, else_=-1)


_DEVICE_NAME = (sa.select(devices.c.computer_dns_name).where(devices.c.id == alerts.c.machine_id)
                .correlate(alerts).scalar_subquery())
ALERT_SORTS: dict[str, sa.ColumnElement[Any]] = {
    "lastActivity": alerts.c.last_event_time, "severity": severity_rank(alerts.c.severity),
    "title": sa.func.lower(alerts.c.title), "status": alerts.c.status, "events": alerts.c.event_count,
    "created": alerts.c.alert_creation_time,
}
ALERT_FIELDS = (alerts.c.title, alerts.c.id, alerts.c.category, alerts.c.account_name, alerts.c.assigned_to,
                alerts.c.mitre_techniques, alerts.c.machine_id, _DEVICE_NAME)

DEVICE_SORTS: dict[str, sa.ColumnElement[Any]] = {
    "name": sa.func.lower(devices.c.computer_dns_name), "lastSeen": devices.c.last_seen,
    "group": sa.func.lower(device_groups.c.name), "firstSeen": devices.c.first_seen,
}
DEVICE_FIELDS = (devices.c.computer_dns_name, devices.c.id, devices.c.last_ip, devices.c.last_external_ip,
                 device_groups.c.name, devices.c.os_platform, devices.c.tags, devices.c.agent_tags)

INCIDENT_SORTS: dict[str, sa.ColumnElement[Any]] = {
    "lastActivity": incidents.c.last_activity, "severity": severity_rank(incidents.c.severity),
    "name": sa.func.lower(incidents.c.name), "status": incidents.c.status, "created": incidents.c.created_time,
}
# An incident is found by the name of one of its devices too (its device ids are a JSON list).
_ON_NAMED_DEVICE = (sa.select(sa.func.lower(devices.c.computer_dns_name))
                    .where(sa.cast(incidents.c.device_ids, sa.String).contains(devices.c.id))
                    .correlate(incidents))


def incident_query(status: str | None, severity: str | None) -> sa.Select[Any]:
    q = sa.select(incidents).where(incidents.c.status != IncidentStatus.REDIRECTED.value)
    if status:
        q = q.where(incidents.c.status == status)
    if severity:
        q = q.where(incidents.c.severity == severity)
    return q


def incident_search(q: sa.Select[Any], words: Sequence[str]) -> sa.Select[Any]:
    for w in words:
        pattern = _like(w.lower())
        q = q.where(sa.or_(
            *(_text(f).like(pattern, escape="\\") for f in (incidents.c.name, incidents.c.id, incidents.c.assigned_to,
                                                           incidents.c.device_ids)),
            sa.exists(_ON_NAMED_DEVICE.where(sa.func.lower(devices.c.computer_dns_name).like(pattern, escape="\\"))),
        ))
    return q


AUDIT_SORTS: dict[str, sa.ColumnElement[Any]] = {
    "seq": audit_log.c.seq, "actor": sa.func.lower(audit_log.c.actor), "action": audit_log.c.action,
}
AUDIT_FIELDS = (audit_log.c.actor, audit_log.c.source_ip, audit_log.c.action, audit_log.c.target_type,
                audit_log.c.target_id, audit_log.c.reason)
