"""Custom detection rules on SQLAlchemy (``vigil.app.detections.DetectionRepository``): the rules, their runs,
the (rule, DeviceId, ReportId) keys already raised, and the alerts a run raises."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from vigil.app.detections import Detection, RunSummary
from vigil.core.alerts import DetectionSource
from vigil.core.severity import Severity
from vigil.hunt.detections import MAX_FAILURES, Hit, RuleFields
from vigil.store.alerts import NewHit, record_hit
from vigil.store.devices import aware
from vigil.store.schema import custom_detection_hits, custom_detection_runs, custom_detections, devices

DISABLED_RULE_ID = "vigil-custom-detection-disabled"


def _detection(r: Any) -> Detection:
    return Detection(
        id=int(r.id),
        fields=RuleFields(r.display_name, r.query_text, r.period, bool(r.enabled), r.title, r.description,
                          r.severity, r.category, tuple(r.mitre_techniques or ()),
                          tuple(r.response_actions or ())),
        device_group_ids=None if r.device_group_ids is None else frozenset(int(g) for g in r.device_group_ids),
        created_by=r.created_by, created_at=aware(r.created_at), last_modified_by=r.last_modified_by,
        last_modified_at=aware(r.last_modified_at), last_run_at=aware(r.last_run_at) if r.last_run_at else None,
        last_run_status=r.last_run_status, last_failure_reason=r.last_failure_reason,
        consecutive_failures=int(r.consecutive_failures),
    )


def _values(f: RuleFields, groups: frozenset[int] | None) -> dict[str, Any]:
    return {"display_name": f.display_name, "query_text": f.query_text, "period": f.period, "enabled": f.enabled,
            "title": f.title, "description": f.description, "severity": f.severity, "category": f.category,
            "mitre_techniques": list(f.techniques), "response_actions": list(f.response_actions),
            "device_group_ids": None if groups is None else sorted(groups)}


def _event_time(value: Any, fallback: datetime) -> datetime:
    if isinstance(value, datetime):
        return aware(value)
    try:
        return aware(datetime.fromisoformat(str(value)))
    except ValueError:
        return fallback


class SqlDetections:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def listing(self) -> list[Detection]:
        with self.engine.connect() as conn:
            return [_detection(r) for r in conn.execute(sa.select(custom_detections).order_by(custom_detections.c.id))]

    def get(self, detection_id: int) -> Detection | None:
        with self.engine.connect() as conn:
            r = conn.execute(sa.select(custom_detections).where(custom_detections.c.id == detection_id)).first()
        return _detection(r) if r is not None else None

    def by_name(self, name: str) -> Detection | None:
        with self.engine.connect() as conn:
            r = conn.execute(sa.select(custom_detections).where(custom_detections.c.display_name == name)).first()
        return _detection(r) if r is not None else None

    def create(self, fields: RuleFields, groups: frozenset[int] | None, who: str, now: datetime) -> int:
        with self.engine.begin() as conn:
            res = conn.execute(custom_detections.insert().values(
                **_values(fields, groups), created_by=who, created_at=now, last_modified_by=who,
                last_modified_at=now, consecutive_failures=0))
            return int(res.inserted_primary_key[0])  # type: ignore[index]

    def update(self, detection_id: int, fields: RuleFields, groups: frozenset[int] | None, who: str,
               now: datetime) -> None:
        with self.engine.begin() as conn:
            # Switching a rule back on gives it a fresh count of failures.
            extra = {"consecutive_failures": 0} if fields.enabled else {}
            conn.execute(custom_detections.update().where(custom_detections.c.id == detection_id).values(
                **_values(fields, groups), last_modified_by=who, last_modified_at=now, **extra))

    def delete(self, detection_id: int) -> bool:
        with self.engine.begin() as conn:
            for t in (custom_detection_hits, custom_detection_runs):
                conn.execute(t.delete().where(t.c.detection_id == detection_id))
            return bool(conn.execute(
                custom_detections.delete().where(custom_detections.c.id == detection_id)).rowcount)

    def record_run(self, detection_id: int, run: RunSummary, started: datetime, failures: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(custom_detection_runs.insert().values(
                detection_id=detection_id, started_at=started, duration_ms=run.duration_ms, status=run.status,
                rows=run.rows, new_hits=run.new_hits, error=run.error))
            values: dict[str, Any] = {"last_run_at": started, "last_run_status": run.status,
                                      "last_failure_reason": run.error, "consecutive_failures": failures}
            if run.disabled:
                values["enabled"] = False
            conn.execute(custom_detections.update().where(custom_detections.c.id == detection_id).values(**values))

    def store_hits(self, detection: Detection, hits: Sequence[Hit], now: datetime) -> list[tuple[Hit, str]]:
        f, new = detection.fields, []
        with self.engine.begin() as conn:
            known = set(conn.execute(sa.select(devices.c.id).where(
                devices.c.id.in_(sorted({h.device_id for h in hits})))).scalars())
            for h in hits:
                if h.device_id not in known:
                    continue
                seen = conn.execute(sa.select(custom_detection_hits.c.alert_id).where(
                    custom_detection_hits.c.detection_id == detection.id,
                    custom_detection_hits.c.device_id == h.device_id,
                    custom_detection_hits.c.report_id == h.report_id)).first()
                if seen is not None:
                    continue
                alert_id, _ = record_hit(conn, NewHit(
                    machine_id=h.device_id, rule_id=detection.rule_id, title=f.title, description=f.description,
                    severity=f.severity, category=f.category,
                    detection_source=DetectionSource.CUSTOM_DETECTION.value, techniques=list(f.techniques),
                    event_time=_event_time(h.row.get("Timestamp"), now), evidence=h.row,
                ), now)
                conn.execute(custom_detection_hits.insert().values(
                    detection_id=detection.id, device_id=h.device_id, report_id=h.report_id, alert_id=alert_id,
                    seen_at=now))
                new.append((h, alert_id))
        return new

    def failure_alert(self, detection: Detection, reason: str, now: datetime) -> None:
        with self.engine.begin() as conn:
            record_hit(conn, NewHit(
                machine_id=None, rule_id=DISABLED_RULE_ID,
                title=f"Custom detection rule switched off: {detection.fields.display_name}",
                description=(f"The rule failed {MAX_FAILURES} runs in a row and was switched off; the last error: "
                             f"{reason}. Fix its query and switch it on again."),
                severity=Severity.MEDIUM.value, category="Suspicious activity",
                detection_source=DetectionSource.CUSTOM_DETECTION.value, techniques=[], event_time=now,
                evidence={"entityType": "CustomDetection", "Timestamp": now.isoformat(), "id": detection.id,
                          "displayName": detection.fields.display_name, "error": reason},
            ), now)

    def runs(self, detection_id: int, limit: int = 20) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(custom_detection_runs).where(
                custom_detection_runs.c.detection_id == detection_id)
                .order_by(custom_detection_runs.c.id.desc()).limit(limit))
            return [{"startedDateTime": aware(r.started_at).isoformat(), "durationMs": r.duration_ms,
                     "status": r.status, "rows": r.rows, "newHits": r.new_hits, "error": r.error} for r in rows]
