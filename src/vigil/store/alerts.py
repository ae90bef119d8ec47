"""Alert records: creation, deduplication into open alerts, and queries for the API and portal."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from vigil.core.alerts import MAX_EVIDENCE, AlertStatus, Classification, Determination, OpenAlert, folds_into
from vigil.core.suppression import SuppressionAction, first_applicable
from vigil.store import incidents as incident_store
from vigil.store.devices import aware
from vigil.store.schema import alert_comments, alerts
from vigil.store.suppression import count_hit, rules_for_title


@dataclass(frozen=True)
class NewHit:
    """One detection on one event, ready to become (or join) an alert.

    An identity alert has no device: ``machine_id`` is None and ``account_name`` names the account.
    """

    machine_id: str | None
    rule_id: str
    title: str
    description: str
    severity: str
    category: str
    detection_source: str
    techniques: list[str]
    event_time: datetime
    evidence: dict[str, Any]
    account_name: str | None = None


def _open_alert(conn: sa.Connection, hit: NewHit) -> OpenAlert | None:
    # A device alert folds by (device, rule); an identity alert by (account, rule).
    subject = (alerts.c.machine_id == hit.machine_id if hit.machine_id is not None
               else sa.and_(alerts.c.machine_id.is_(None), alerts.c.account_name == hit.account_name))
    row = conn.execute(
        sa.select(alerts.c.id, alerts.c.status, alerts.c.last_event_time)
        .where(subject, alerts.c.rule_id == hit.rule_id, alerts.c.status != AlertStatus.RESOLVED.value)
        .order_by(alerts.c.last_event_time.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return OpenAlert(row.id, AlertStatus(row.status), aware(row.last_event_time))


def record_hit(conn: sa.Connection, hit: NewHit, now: datetime) -> tuple[str, bool]:
    """Store a hit: fold it into the open alert of its rule and device (or account), or open a new alert.

    Returns (alert id, created).
    """
    existing = _open_alert(conn, hit)
    if existing is not None and folds_into(existing, hit.event_time):
        row = conn.execute(
            sa.select(alerts.c.evidence, alerts.c.first_event_time, alerts.c.event_count)
            .where(alerts.c.id == existing.id)
        ).one()
        evidence = list(row.evidence)
        if len(evidence) < MAX_EVIDENCE:
            evidence.append(hit.evidence)
        conn.execute(
            alerts.update().where(alerts.c.id == existing.id).values(
                first_event_time=min(aware(row.first_event_time), hit.event_time),
                last_event_time=max(existing.last_event_time, hit.event_time),
                event_count=row.event_count + 1, evidence=evidence, last_update_time=now,
            )
        )
        return existing.id, False
    alert_id = "va" + secrets.token_hex(16)
    rule = first_applicable(rules_for_title(conn, hit.title), hit.title, hit.machine_id, [hit.evidence])
    resolved = rule is not None and rule.action is SuppressionAction.RESOLVE
    conn.execute(
        alerts.insert().values(
            id=alert_id, machine_id=hit.machine_id, account_name=hit.account_name, title=hit.title,
            description=hit.description,
            severity=hit.severity, category=hit.category,
            status=(AlertStatus.RESOLVED if resolved else AlertStatus.NEW).value,
            classification=None, determination=None, investigation_state="Unknown",
            detection_source=hit.detection_source, rule_id=hit.rule_id, mitre_techniques=hit.techniques,
            assigned_to=None, alert_creation_time=now, first_event_time=hit.event_time,
            last_event_time=hit.event_time, last_update_time=now, event_count=1, evidence=[hit.evidence],
            resolved_time=now if resolved else None, suppressed_by=rule.id if rule else None,
            hidden=rule is not None and rule.action is SuppressionAction.HIDE,
        )
    )
    if rule is not None:
        count_hit(conn, rule.id)
        add_comment(conn, alert_id, "Vigil", f"Suppression rule {rule.id} applied: {rule.action.value}", now,
                    history=True)
    if rule is None or rule.action is SuppressionAction.RESOLVE:
        incident_store.correlate(conn, alert_id, now)
    return alert_id, True


def add_comment(
    conn: sa.Connection, alert_id: str, author: str, text: str, now: datetime, *, history: bool = False
) -> None:
    conn.execute(
        alert_comments.insert().values(
            alert_id=alert_id, author=author, kind="History" if history else "Comment", text=text, created_at=now
        )
    )


def comments(conn: sa.Connection, alert_id: str) -> list[sa.Row[Any]]:
    return list(
        conn.execute(
            sa.select(alert_comments).where(alert_comments.c.alert_id == alert_id).order_by(alert_comments.c.id)
        )
    )


@dataclass(frozen=True)
class AlertChange:
    """Defender's `PATCH /api/alerts/{id}` body; None leaves a property as it is."""

    status: AlertStatus | None = None
    assigned_to: str | None = None
    classification: Classification | None = None
    determination: Determination | None = None
    comment: str | None = None


def update_alert(conn: sa.Connection, alert_id: str, change: AlertChange, who: str, now: datetime) -> bool:
    """Apply a change, recording each property change as a history comment; False if no such alert."""
    row = get_alert(conn, alert_id)
    if row is None:
        return False
    values: dict[str, Any] = {}
    for column, new in (
        ("status", change.status), ("assigned_to", change.assigned_to),
        ("classification", change.classification), ("determination", change.determination),
    ):
        if new is None:
            continue
        new_value = new.value if isinstance(new, AlertStatus | Classification | Determination) else new
        if getattr(row, column) != new_value:
            values[column] = new_value
            label = column.replace("_", " ")
            add_comment(conn, alert_id, who, f"{label}: {getattr(row, column) or '—'} → {new_value}", now,
                        history=True)
    if "status" in values:
        values["resolved_time"] = now if values["status"] == AlertStatus.RESOLVED.value else None
    if change.comment:
        add_comment(conn, alert_id, who, change.comment, now)
    conn.execute(alerts.update().where(alerts.c.id == alert_id).values(last_update_time=now, **values))
    return True


def list_alerts(
    conn: sa.Connection, *, machine_id: str | None = None, status: str | None = None,
    severity: str | None = None, since: datetime | None = None, limit: int = 1000, incident_id: int | None = None,
    scope: sa.ColumnElement[bool] | None = None,
) -> list[sa.Row[Any]]:
    """``scope`` limits the result to the caller's device groups (see vigil.server.scope)."""
    q = alert_query(machine_id=machine_id, status=status, severity=severity, since=since, incident_id=incident_id,
                    scope=scope)
    return list(conn.execute(q.order_by(alerts.c.alert_creation_time.desc()).limit(limit)))


def alert_query(
    *, machine_id: str | None = None, status: str | None = None, severity: str | None = None,
    since: datetime | None = None, incident_id: int | None = None, scope: sa.ColumnElement[bool] | None = None,
) -> sa.Select[Any]:
    """The alerts the queue shows (suppressed ones hidden), filtered; unordered, for a caller to order and page."""
    q = sa.select(alerts).where(alerts.c.hidden.is_(False))
    if scope is not None:
        q = q.where(scope)
    if incident_id is not None:
        q = q.where(alerts.c.incident_id == incident_id)
    if machine_id:
        q = q.where(alerts.c.machine_id == machine_id)
    if status:
        q = q.where(alerts.c.status == status)
    if severity:
        q = q.where(alerts.c.severity == severity)
    if since:
        q = q.where(alerts.c.alert_creation_time >= since)
    return q


def get_alert(conn: sa.Connection, alert_id: str, scope: sa.ColumnElement[bool] | None = None) -> sa.Row[Any] | None:
    """An alert by id; hidden (suppressed) alerts are not found, as in Defender."""
    q = sa.select(alerts).where(alerts.c.id == alert_id, alerts.c.hidden.is_(False))
    return conn.execute(q if scope is None else q.where(scope)).first()
