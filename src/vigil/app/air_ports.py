"""The automated-investigation store port: investigations, remediations, expert cases and the evidence they read.

Not on ``UnitOfWork`` yet (``ports.py`` and ``store/sql.py`` are being reshaped by other work): ``air_repo(uow)``
opens it on the unit of work's own connection, so an investigation and the actions it signs commit together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from vigil.app.ports import UnitOfWork
from vigil.asr.indicators import Indicator


@dataclass(frozen=True)
class NewInvestigation:
    machine_id: str
    triggered_by: str
    requested_by: str
    automation_level: str
    triggering_alert_id: str | None = None
    incident_id: int | None = None
    parent_id: int | None = None


@dataclass(frozen=True)
class InvestigationRecord:
    id: int
    machine_id: str
    computer_dns_name: str
    group_id: int
    triggering_alert_id: str | None
    incident_id: int | None
    parent_id: int | None
    triggered_by: str
    requested_by: str
    state: str
    status_details: str
    automation_level: str
    start_time: datetime
    end_time: datetime | None
    last_update_time: datetime
    cancelled_by: str | None
    entities: tuple[dict[str, Any], ...]
    verdicts: tuple[dict[str, Any], ...]
    log: tuple[dict[str, Any], ...]
    expansion: dict[str, Any]


@dataclass(frozen=True)
class RemediationRecord:
    """One remediation; ``action_*`` and ``undone`` come from its machine action (None before one is issued)."""

    kind: str
    entity_key: str
    machine_id: str
    target_path: str
    parameters: dict[str, Any]
    decision: str
    why: str
    action_id: str | None = None
    id: int = 0
    investigation_id: int = 0
    created_at: datetime | None = None
    action_status: str | None = None
    action_approval: str | None = None
    undone: bool = False


@dataclass(frozen=True)
class AntivirusHit:
    path: str
    sha256: str
    threat: str
    # "yara" when a YARA rule found it (the scan reports the signature's source when it knows it).
    source: str = ""


@dataclass(frozen=True)
class NewExpertCase:
    kind: str
    source_type: str
    source_id: str
    machine_ids: tuple[str, ...]
    expert_group: str
    question: str
    requested_by: str
    due_at: datetime


@dataclass(frozen=True)
class ExpertCaseRecord:
    id: int
    kind: str
    source_type: str
    source_id: str
    machine_ids: tuple[str, ...]
    expert_group: str
    question: str
    status: str
    requested_by: str
    created_at: datetime
    due_at: datetime
    answer: str | None = None
    answered_by: str | None = None
    answered_at: datetime | None = None
    hunting_queries: tuple[str, ...] = field(default_factory=tuple)
    recommended_actions: tuple[str, ...] = field(default_factory=tuple)


class AirRepository(Protocol):
    def create(self, new: NewInvestigation, now: datetime) -> int: ...
    def save(self, inv: InvestigationRecord, now: datetime) -> None:
        """Write state, details, entities, verdicts, log and expansion; the triggering alert's state follows."""
        ...
    def get(self, investigation_id: int, group_ids: frozenset[int] | None) -> InvestigationRecord | None: ...
    def listing(self, group_ids: frozenset[int] | None, state: str | None = None, machine_id: str | None = None,
                alert_id: str | None = None, limit: int = 1000) -> Sequence[InvestigationRecord]: ...
    def group_level(self, group_id: int) -> str: ...
    def uninvestigated_alerts(self, severities: Sequence[str], since: datetime) -> Sequence[str]: ...
    def open_investigations(self) -> Sequence[int]: ...
    def add_remediation(self, investigation_id: int, r: RemediationRecord, now: datetime) -> int: ...
    def remediations(self, investigation_id: int) -> Sequence[RemediationRecord]: ...
    def rows(self, table: str, device_id: str, start: datetime, end: datetime) -> Sequence[dict[str, Any]]: ...
    def devices_seeing(self, kind: str, value: str) -> set[str]: ...
    def fleet_size(self) -> int: ...
    def antivirus(self, device_id: str) -> Sequence[AntivirusHit]: ...
    def indicators(self) -> Sequence[Indicator]: ...
    def add_case(self, case: NewExpertCase, now: datetime) -> int: ...
    def cases(self, case_id: int | None = None) -> Sequence[ExpertCaseRecord]: ...
    def user_groups_of(self, username: str, now: datetime) -> set[str]: ...
    def user_group_exists(self, name: str) -> bool: ...
    def emails_of_group(self, name: str, now: datetime) -> list[str]: ...
    def email_of(self, username: str) -> str | None: ...
    def answer_case(self, case_id: int, answer: str, by: str, queries: Sequence[str], actions: Sequence[str],
                    now: datetime) -> None: ...


def air_repo(uow: UnitOfWork) -> AirRepository:
    """The AIR repository on ``uow``'s connection (the SQL store's; the in-memory store has none yet)."""
    from vigil.store.air import SqlAir

    return SqlAir(uow.conn)  # type: ignore[attr-defined]
