"""Ask an expert (the open stand-in for Microsoft Threat Experts): a Tier 1 or 2 analyst escalates an alert, incident
or investigation to an expert user group; the expert reads a case scoped to its devices and answers.

An expert is any member of the named user group (CDOC Tier 3, or an outside MSSP's account with a read-only role and
no device groups of its own): the case, not the expert's role, opens its devices' evidence to them, and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from vigil.app.air_ports import AirRepository, ExpertCaseRecord, NewExpertCase, air_repo
from vigil.app.errors import Forbidden, InvalidInput, NotFound
from vigil.app.ports import AlertQuery, AlertRecord, AuditRecord, Store, UnitOfWork
from vigil.app.principal import Principal
from vigil.core.clock import Clock
from vigil.core.rbac import Permission

SOURCES = ("Alert", "Incident", "Investigation")
MAX_SLA_HOURS = 24 * 14
MAX_TEXT = 10_000


@dataclass(frozen=True)
class Notification:
    """What to announce once the change is committed: by webhook (the JSON below) and by e-mail to ``recipients``."""

    event: str  # expert.ask, expert.answer, expert.notify
    case_id: int
    subject: str
    text: str
    recipients: tuple[str, ...]


Notify = Callable[[Notification], None]


def _nobody(_: Notification) -> None:
    return None


@dataclass(frozen=True)
class Case:
    record: ExpertCaseRecord
    overdue: bool
    # The evidence the expert sees: the case's alerts (with their events) and investigations, on its devices only.
    alerts: tuple[AlertRecord, ...] = ()
    investigations: tuple[dict[str, Any], ...] = ()
    # Whether the caller is of the case's expert group (and so may answer it while it is open).
    expert: bool = False


def _text(value: str | None, field: str, limit: int = MAX_TEXT) -> str:
    text = (value or "").strip()
    if not text:
        raise InvalidInput(f"{field} is required", field=field)
    if len(text) > limit:
        raise InvalidInput(f"{field} is over {limit} characters", field=field)
    return text


def _source_devices(uow: UnitOfWork, repo: AirRepository, who: Principal, kind: str, ref: str) -> tuple[str, ...]:
    """The devices of the escalated object, which the asking analyst must be able to see."""
    groups = who.device_group_ids
    if kind == "Alert":
        alert = uow.alerts.get(ref, groups)
        if alert is None or not alert.machine_id:
            raise NotFound(f"no device alert with id {ref!r}", field="sourceId")
        return (alert.machine_id,)
    if not ref.isdigit():
        raise NotFound(f"no {kind.lower()} with id {ref!r}", field="sourceId")
    if kind == "Incident":
        incident = uow.incidents.get(int(ref), groups)
        if incident is None:
            raise NotFound(f"no incident with id {ref}", field="sourceId")
        return tuple(d for d in incident.device_ids if (rec := uow.devices.get(d)) and who.sees_group(rec.group_id))
    inv = repo.get(int(ref), groups)
    if inv is None:
        raise NotFound(f"no investigation with id {ref}", field="sourceId")
    return (inv.machine_id,)


def ask(store: Store, clock: Clock, who: Principal, source_type: str, source_id: str, question: str,
        expert_group: str, sla_hours: int = 24, notify: Notify = _nobody) -> Case:
    """Open a case for ``expert_group`` with ``question``; the expert is due to answer within ``sla_hours``."""
    who.require(Permission.ALERTS_INVESTIGATION)
    if source_type not in SOURCES:
        raise InvalidInput(f"sourceType must be one of {', '.join(SOURCES)}", field="sourceType")
    if not isinstance(sla_hours, int) or not 1 <= sla_hours <= MAX_SLA_HOURS:
        raise InvalidInput(f"slaHours must be a whole number from 1 to {MAX_SLA_HOURS}", field="slaHours")
    text = _text(question, "question")
    now = clock.now()
    with store.begin() as uow:
        repo = air_repo(uow)
        if not repo.user_group_exists(expert_group):
            raise InvalidInput(f"no user group named {expert_group!r} to ask", field="expertGroup")
        devices = _source_devices(uow, repo, who, source_type, source_id)
        case_id = repo.add_case(NewExpertCase("Question", source_type, source_id, devices, expert_group, text,
                                              who.actor, now + timedelta(hours=sla_hours)), now)
        uow.audit.append(AuditRecord(who.actor, "expert.ask", "expert_case", str(case_id), after={
            "sourceType": source_type, "sourceId": source_id, "expertGroup": expert_group, "slaHours": sla_hours},
            source_ip=who.source_ip), now)
        out = _case(uow, repo, repo.cases(case_id)[0], now, evidence=False)
        to = tuple(repo.emails_of_group(expert_group, now))
    notify(Notification("expert.ask", case_id, f"[Vigil] Case {case_id} for {expert_group}: {source_type} {source_id}",
                        f"{who.actor} asks, due {out.record.due_at.isoformat()}:\n\n{text}", to))
    return out


def _is_expert(repo: AirRepository, who: Principal, case: ExpertCaseRecord, now: datetime) -> bool:
    return case.expert_group in repo.user_groups_of(who.username or who.actor, now)


def _case(uow: UnitOfWork, repo: AirRepository, rec: ExpertCaseRecord, now: datetime, evidence: bool) -> Case:
    overdue = rec.status == "Open" and now > rec.due_at
    if not evidence:
        return Case(rec, overdue)
    alerts: list[AlertRecord] = []
    for device in rec.machine_ids:
        alerts += uow.alerts.query(AlertQuery(machine_id=device, limit=200), None)
    invs = [{"id": i.id, "machineId": i.machine_id, "state": i.state, "entities": list(i.entities),
             "verdicts": list(i.verdicts)} for d in rec.machine_ids for i in repo.listing(None, machine_id=d)]
    return Case(rec, overdue, tuple(alerts), tuple(invs))


def _visible(repo: AirRepository, uow: UnitOfWork, who: Principal, rec: ExpertCaseRecord, now: datetime) -> bool:
    """The expert group's members, and analysts who see every device of the case."""
    if _is_expert(repo, who, rec, now):
        return True
    if Permission.VIEW_DATA_SECOPS not in who.permissions:
        return False
    return all((d := uow.devices.get(m)) is not None and who.sees_group(d.group_id) for m in rec.machine_ids)


def cases(store: Store, clock: Clock, who: Principal) -> list[Case]:
    now = clock.now()
    with store.begin() as uow:
        repo = air_repo(uow)
        return [_case(uow, repo, r, now, evidence=False) for r in repo.cases() if _visible(repo, uow, who, r, now)]


def case(store: Store, clock: Clock, who: Principal, case_id: int) -> Case:
    """One case with its evidence; unknown to anyone who is neither its expert nor sees all its devices."""
    now = clock.now()
    with store.begin() as uow:
        repo = air_repo(uow)
        found = repo.cases(case_id)
        if not found or not _visible(repo, uow, who, found[0], now):
            raise NotFound(f"no expert case with id {case_id}", field="id")
        return replace(_case(uow, repo, found[0], now, evidence=True), expert=_is_expert(repo, who, found[0], now))


def answer(store: Store, clock: Clock, who: Principal, case_id: int, text: str,
           hunting_queries: Sequence[str] = (), recommended_actions: Sequence[str] = (), notify: Notify = _nobody
           ) -> Case:
    """The expert's answer, with hunting queries and recommended actions; only the expert group answers."""
    now = clock.now()
    reply = _text(text, "answer")
    queries = [_text(q, f"huntingQueries[{i}]", 20_000) for i, q in enumerate(hunting_queries)]
    steps = [_text(a, f"recommendedActions[{i}]", 2_000) for i, a in enumerate(recommended_actions)]
    with store.begin() as uow:
        repo = air_repo(uow)
        found = repo.cases(case_id)
        if not found or not _visible(repo, uow, who, found[0], now):
            raise NotFound(f"no expert case with id {case_id}", field="id")
        if not _is_expert(repo, who, found[0], now):
            raise Forbidden(f"only members of {found[0].expert_group!r} answer this case")
        if found[0].status != "Open":
            raise InvalidInput(f"case {case_id} is already {found[0].status}", field="status")
        repo.answer_case(case_id, reply, who.actor, queries, steps, now)
        uow.audit.append(AuditRecord(who.actor, "expert.answer", "expert_case", str(case_id), after={
            "huntingQueries": len(queries), "recommendedActions": len(steps)}, source_ip=who.source_ip), now)
        out = _case(uow, repo, repo.cases(case_id)[0], now, evidence=True)
        asker = repo.email_of(found[0].requested_by.split(" (", 1)[0])
    notify(Notification("expert.answer", case_id, f"[Vigil] Case {case_id} answered by {who.actor}", reply,
                        (asker,) if asker else ()))
    return out


def targeted_attack_notification(store: Store, clock: Clock, who: Principal, expert_group: str,
                                 machine_group_id: int, title: str, details: str, notify: Notify = _nobody) -> Case:
    """An expert tells a device group's analysts of a targeted attack; recorded as an answered case."""
    now = clock.now()
    heading, body = _text(title, "title", 512), _text(details, "details")
    with store.begin() as uow:
        repo = air_repo(uow)
        if expert_group not in repo.user_groups_of(who.username or who.actor, now):
            raise Forbidden(f"only members of {expert_group!r} raise its notifications")
        devices = tuple(d.id for d in uow.devices.in_groups(frozenset({machine_group_id})))
        case_id = repo.add_case(NewExpertCase("TargetedAttackNotification", "DeviceGroup", str(machine_group_id),
                                              devices, expert_group, heading, who.actor, now), now)
        repo.answer_case(case_id, body, who.actor, (), (), now)
        uow.audit.append(AuditRecord(who.actor, "expert.notify", "expert_case", str(case_id), after={
            "machineGroupId": machine_group_id, "title": heading}, source_ip=who.source_ip), now)
        out = _case(uow, repo, repo.cases(case_id)[0], now, evidence=False)
    notify(Notification("expert.notify", case_id, f"[Vigil] Targeted attack notification: {heading}", body, ()))
    return out
