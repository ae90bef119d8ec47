"""Automated investigations on SQLAlchemy: investigations, remediations, expert cases, and the telemetry they read."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from vigil.app.air_ports import (
    AntivirusHit,
    ExpertCaseRecord,
    InvestigationRecord,
    NewExpertCase,
    NewInvestigation,
    RemediationRecord,
)
from vigil.asr.indicators import Indicator, IndicatorAction, IndicatorType
from vigil.store.devices import aware
from vigil.store.schema import (
    air_investigations,
    air_remediations,
    alerts,
    device_groups,
    devices,
    expert_cases,
    indicators,
    machine_actions,
    telemetry_tables,
    user_group_members,
    user_groups,
    users,
)

_INV = sa.select(air_investigations, devices.c.computer_dns_name, devices.c.group_id).join(
    devices, devices.c.id == air_investigations.c.machine_id)


def _maybe(ts: datetime | None) -> datetime | None:
    return aware(ts) if ts is not None else None


def _investigation(r: Any) -> InvestigationRecord:
    return InvestigationRecord(
        id=int(r.id), machine_id=r.machine_id, computer_dns_name=r.computer_dns_name, group_id=int(r.group_id),
        triggering_alert_id=r.triggering_alert_id, incident_id=r.incident_id, parent_id=r.parent_id,
        triggered_by=r.triggered_by, requested_by=r.requested_by, state=r.state, status_details=r.status_details,
        automation_level=r.automation_level, start_time=aware(r.start_time), end_time=_maybe(r.end_time),
        last_update_time=aware(r.last_update_time), cancelled_by=r.cancelled_by,
        entities=tuple(r.entities or ()), verdicts=tuple(r.verdicts or ()), log=tuple(r.log or ()),
        expansion=dict(r.expansion or {}),
    )


class SqlAir:
    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    # Investigations
    def create(self, new: NewInvestigation, now: datetime) -> int:
        return int(self._c.execute(air_investigations.insert().values(
            machine_id=new.machine_id, triggering_alert_id=new.triggering_alert_id, incident_id=new.incident_id,
            parent_id=new.parent_id, triggered_by=new.triggered_by, requested_by=new.requested_by, state="Running",
            status_details="", automation_level=new.automation_level, start_time=now, last_update_time=now,
            entities=[], verdicts=[], log=[], expansion={},
        )).inserted_primary_key[0])  # type: ignore[index]

    def save(self, inv: InvestigationRecord, now: datetime) -> None:
        self._c.execute(air_investigations.update().where(air_investigations.c.id == inv.id).values(
            state=inv.state, status_details=inv.status_details, end_time=inv.end_time, last_update_time=now,
            cancelled_by=inv.cancelled_by, entities=list(inv.entities), verdicts=list(inv.verdicts),
            log=list(inv.log), expansion=inv.expansion,
        ))
        if inv.triggering_alert_id:
            self._c.execute(alerts.update().where(alerts.c.id == inv.triggering_alert_id).values(
                investigation_state=inv.state))

    def get(self, investigation_id: int, group_ids: frozenset[int] | None) -> InvestigationRecord | None:
        q = _INV.where(air_investigations.c.id == investigation_id)
        if group_ids is not None:
            q = q.where(devices.c.group_id.in_(sorted(group_ids)))
        row = self._c.execute(q).first()
        return _investigation(row) if row else None

    def listing(self, group_ids: frozenset[int] | None, state: str | None = None, machine_id: str | None = None,
                alert_id: str | None = None, limit: int = 1000) -> list[InvestigationRecord]:
        q = _INV
        if group_ids is not None:
            q = q.where(devices.c.group_id.in_(sorted(group_ids)))
        if state:
            q = q.where(air_investigations.c.state == state)
        if machine_id:
            q = q.where(air_investigations.c.machine_id == machine_id)
        if alert_id:
            q = q.where(air_investigations.c.triggering_alert_id == alert_id)
        q = q.order_by(air_investigations.c.start_time.desc(), air_investigations.c.id.desc()).limit(limit)
        return [_investigation(r) for r in self._c.execute(q)]

    def group_level(self, group_id: int) -> str:
        return str(self._c.execute(sa.select(device_groups.c.automation_level).where(
            device_groups.c.id == group_id)).scalar_one())

    def uninvestigated_alerts(self, severities: Sequence[str], since: datetime) -> list[str]:
        """Alert ids of those severities, created since, with a device and no investigation yet."""
        started = sa.select(air_investigations.c.triggering_alert_id).where(
            air_investigations.c.triggering_alert_id.is_not(None))
        q = sa.select(alerts.c.id).where(
            alerts.c.severity.in_(list(severities)), alerts.c.alert_creation_time >= since,
            alerts.c.machine_id.is_not(None), alerts.c.hidden.is_(False), alerts.c.id.not_in(started),
        ).order_by(alerts.c.alert_creation_time)
        return [str(r[0]) for r in self._c.execute(q)]

    # Remediations
    def add_remediation(self, investigation_id: int, r: RemediationRecord, now: datetime) -> int:
        return int(self._c.execute(air_remediations.insert().values(
            investigation_id=investigation_id, kind=r.kind, entity_key=r.entity_key, machine_id=r.machine_id,
            target_path=r.target_path, parameters=r.parameters, decision=r.decision, action_id=r.action_id,
            why=r.why, created_at=now,
        )).inserted_primary_key[0])  # type: ignore[index]

    def remediations(self, investigation_id: int) -> list[RemediationRecord]:
        undo = machine_actions.alias("undo")
        undone = sa.select(sa.func.count()).select_from(undo).where(
            undo.c.undo_of == air_remediations.c.action_id, undo.c.status == "Succeeded").scalar_subquery()
        q = sa.select(air_remediations, machine_actions.c.status.label("action_status"),
                      machine_actions.c.approval.label("action_approval"), undone.label("undone")).outerjoin(
            machine_actions, machine_actions.c.id == air_remediations.c.action_id,
        ).where(air_remediations.c.investigation_id == investigation_id).order_by(air_remediations.c.id)
        return [RemediationRecord(
            id=int(r.id), investigation_id=int(r.investigation_id), kind=r.kind, entity_key=r.entity_key,
            machine_id=r.machine_id, target_path=r.target_path, parameters=dict(r.parameters or {}),
            decision=r.decision, action_id=r.action_id, why=r.why, created_at=aware(r.created_at),
            action_status=r.action_status, action_approval=r.action_approval, undone=bool(r.undone),
        ) for r in self._c.execute(q)]

    def open_investigations(self) -> list[int]:
        q = sa.select(air_investigations.c.id).where(air_investigations.c.state.in_(["Running", "PendingApproval"]))
        return [int(r[0]) for r in self._c.execute(q)]

    # Evidence
    def rows(self, table: str, device_id: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        t = telemetry_tables[table]
        q = sa.select(t).where(t.c.DeviceId == device_id, t.c.Timestamp >= start, t.c.Timestamp <= end)
        return [{k: v for k, v in r.items() if v is not None}
                for r in self._c.execute(q.order_by(t.c.Timestamp).limit(20_000)).mappings()]

    def devices_seeing(self, kind: str, value: str) -> set[str]:
        """Devices whose telemetry shows a file hash (``sha256``), an address (``ip``) or a host (``domain``)."""
        out: set[str] = set()
        if kind == "sha256":
            for name in ("DeviceProcessEvents", "DeviceFileEvents"):
                t = telemetry_tables[name]
                out |= {str(r[0]) for r in self._c.execute(sa.select(t.c.DeviceId).where(t.c.SHA256.in_([value]))
                                                           .distinct())}
        else:
            t = telemetry_tables["DeviceNetworkEvents"]
            col = t.c.RemoteIP if kind == "ip" else t.c.RemoteUrl
            out |= {str(r[0]) for r in self._c.execute(sa.select(t.c.DeviceId).where(col == value).distinct())}
        return out

    def fleet_size(self) -> int:
        return int(self._c.execute(sa.select(sa.func.count()).select_from(devices).where(
            devices.c.offboarded_at.is_(None))).scalar_one())

    def antivirus(self, device_id: str) -> list[AntivirusHit]:
        t = telemetry_tables["DeviceEvents"]
        q = sa.select(t.c.FolderPath, t.c.SHA256, t.c.AdditionalFields).where(
            t.c.DeviceId == device_id, t.c.ActionType == "AntivirusDetection")
        out = []
        for r in self._c.execute(q):
            extra = _json(r.AdditionalFields)
            out.append(AntivirusHit(str(r.FolderPath or extra.get("FolderPath") or ""), str(r.SHA256 or ""),
                                    str(extra.get("ThreatName") or ""), str(extra.get("SignatureSource") or "")))
        return out

    def indicators(self) -> list[Indicator]:
        return [Indicator(r.indicator_value, IndicatorType(r.indicator_type), IndicatorAction(r.action), r.title,
                          expiration_time=_maybe(r.expiration_time), rbac_group_ids=tuple(r.rbac_group_ids or ()))
                for r in self._c.execute(sa.select(indicators))]

    # Ask an expert
    def add_case(self, case: NewExpertCase, now: datetime) -> int:
        return int(self._c.execute(expert_cases.insert().values(
            kind=case.kind, source_type=case.source_type, source_id=case.source_id,
            machine_ids=list(case.machine_ids), expert_group=case.expert_group, question=case.question,
            status="Open", requested_by=case.requested_by, created_at=now, due_at=case.due_at,
            hunting_queries=[], recommended_actions=[],
        )).inserted_primary_key[0])  # type: ignore[index]

    def cases(self, case_id: int | None = None) -> list[ExpertCaseRecord]:
        q = sa.select(expert_cases).order_by(expert_cases.c.id.desc())
        if case_id is not None:
            q = q.where(expert_cases.c.id == case_id)
        return [ExpertCaseRecord(
            id=int(r.id), kind=r.kind, source_type=r.source_type, source_id=r.source_id,
            machine_ids=tuple(r.machine_ids or ()), expert_group=r.expert_group, question=r.question,
            status=r.status, requested_by=r.requested_by, created_at=aware(r.created_at), due_at=aware(r.due_at),
            answer=r.answer, answered_by=r.answered_by, answered_at=_maybe(r.answered_at),
            hunting_queries=tuple(r.hunting_queries or ()), recommended_actions=tuple(r.recommended_actions or ()),
        ) for r in self._c.execute(q)]

    def user_groups_of(self, username: str, now: datetime) -> set[str]:
        m = user_group_members.c
        q = sa.select(user_groups.c.name).join(user_group_members, m.user_group_id == user_groups.c.id).join(
            users, users.c.id == m.user_id).where(users.c.username == username, sa.or_(
                m.expires_at.is_(None), m.expires_at > now))
        return {str(r[0]) for r in self._c.execute(q)}

    def emails_of_group(self, name: str, now: datetime) -> list[str]:
        m = user_group_members.c
        q = sa.select(users.c.email).join(user_group_members, m.user_id == users.c.id).join(
            user_groups, user_groups.c.id == m.user_group_id).where(
            user_groups.c.name == name, users.c.email.is_not(None), sa.or_(m.expires_at.is_(None), m.expires_at > now))
        return sorted({str(r[0]) for r in self._c.execute(q) if r[0]})

    def email_of(self, username: str) -> str | None:
        value = self._c.execute(sa.select(users.c.email).where(users.c.username == username)).scalar_one_or_none()
        return str(value) if value else None

    def user_group_exists(self, name: str) -> bool:
        return self._c.execute(sa.select(user_groups.c.id).where(user_groups.c.name == name)).first() is not None

    def answer_case(self, case_id: int, answer: str, by: str, queries: Sequence[str], actions: Sequence[str],
                    now: datetime) -> None:
        self._c.execute(expert_cases.update().where(expert_cases.c.id == case_id).values(
            status="Answered", answer=answer, answered_by=by, answered_at=now, hunting_queries=list(queries),
            recommended_actions=list(actions)))


def _json(text: Any) -> dict[str, Any]:
    if isinstance(text, dict):
        return text
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
