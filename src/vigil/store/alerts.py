"""Alert records: creation, deduplication into open alerts, and queries for the API and portal."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from vigil.core.alerts import MAX_EVIDENCE, AlertStatus, OpenAlert, folds_into
from vigil.store.devices import aware
from vigil.store.schema import alerts


@dataclass(frozen=True)
class NewHit:
    """One detection on one event, ready to become (or join) an alert."""

    machine_id: str
    rule_id: str
    title: str
    description: str
    severity: str
    category: str
    detection_source: str
    techniques: list[str]
    event_time: datetime
    evidence: dict[str, Any]


def _open_alert(conn: sa.Connection, machine_id: str, rule_id: str) -> OpenAlert | None:
    row = conn.execute(
        sa.select(alerts.c.id, alerts.c.status, alerts.c.last_event_time)
        .where(alerts.c.machine_id == machine_id, alerts.c.rule_id == rule_id,
               alerts.c.status != AlertStatus.RESOLVED.value)
        .order_by(alerts.c.last_event_time.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return OpenAlert(row.id, AlertStatus(row.status), aware(row.last_event_time))


def record_hit(conn: sa.Connection, hit: NewHit, now: datetime) -> tuple[str, bool]:
    """Store a hit: fold it into the open alert of its rule and device, or open a new alert.

    Returns (alert id, created).
    """
    existing = _open_alert(conn, hit.machine_id, hit.rule_id)
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
    conn.execute(
        alerts.insert().values(
            id=alert_id, machine_id=hit.machine_id, title=hit.title, description=hit.description,
            severity=hit.severity, category=hit.category, status=AlertStatus.NEW.value,
            classification=None, determination=None, investigation_state="Unknown",
            detection_source=hit.detection_source, rule_id=hit.rule_id, mitre_techniques=hit.techniques,
            assigned_to=None, alert_creation_time=now, first_event_time=hit.event_time,
            last_event_time=hit.event_time, last_update_time=now, event_count=1, evidence=[hit.evidence],
        )
    )
    return alert_id, True


def list_alerts(
    conn: sa.Connection, *, machine_id: str | None = None, status: str | None = None,
    severity: str | None = None, since: datetime | None = None, limit: int = 1000,
) -> list[sa.Row[Any]]:
    q = sa.select(alerts)
    if machine_id:
        q = q.where(alerts.c.machine_id == machine_id)
    if status:
        q = q.where(alerts.c.status == status)
    if severity:
        q = q.where(alerts.c.severity == severity)
    if since:
        q = q.where(alerts.c.alert_creation_time >= since)
    return list(conn.execute(q.order_by(alerts.c.alert_creation_time.desc()).limit(limit)))


def get_alert(conn: sa.Connection, alert_id: str) -> sa.Row[Any] | None:
    return conn.execute(sa.select(alerts).where(alerts.c.id == alert_id)).first()
