"""Ask an expert: escalate an alert, incident or investigation to an expert user group; the expert answers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from vigil.app import experts as app_experts
from vigil.core.rbac import Permission
from vigil.server import app_edge as edge
from vigil.server.api._json import iso
from vigil.server.api.alerts import AlertInfo, alert_info
from vigil.server.auth import Principal, requires, services
from vigil.server.notify import ExpertNotifier

router = APIRouter()


class CaseInfo(BaseModel):
    id: int
    kind: str  # Question or TargetedAttackNotification
    sourceType: str
    sourceId: str
    machineIds: list[str]
    expertGroup: str
    question: str
    status: str
    requestedBy: str
    createdTime: str | None
    dueTime: str | None
    overdue: bool
    answer: str | None
    answeredBy: str | None
    answeredTime: str | None
    huntingQueries: list[str]
    recommendedActions: list[str]


class CaseDetail(CaseInfo):
    alerts: list[AlertInfo]
    investigations: list[dict[str, Any]]


class CaseList(BaseModel):
    value: list[CaseInfo]


class AskBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sourceType: str = Field(max_length=16)
    sourceId: str = Field(max_length=64)
    question: str = Field(max_length=10_000)
    expertGroup: str = Field(max_length=128)
    slaHours: int = 24


class AnswerBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    answer: str = Field(max_length=10_000)
    huntingQueries: list[str] = Field(default_factory=list, max_length=20)
    recommendedActions: list[str] = Field(default_factory=list, max_length=50)


class NotificationBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    expertGroup: str = Field(max_length=128)
    machineGroupId: int
    title: str = Field(max_length=512)
    details: str = Field(max_length=10_000)


def case_info(c: app_experts.Case) -> CaseInfo:
    r = c.record
    return CaseInfo(
        id=r.id, kind=r.kind, sourceType=r.source_type, sourceId=r.source_id, machineIds=list(r.machine_ids),
        expertGroup=r.expert_group, question=r.question, status=r.status, requestedBy=r.requested_by,
        createdTime=iso(r.created_at), dueTime=iso(r.due_at), overdue=c.overdue, answer=r.answer,
        answeredBy=r.answered_by, answeredTime=iso(r.answered_at), huntingQueries=list(r.hunting_queries),
        recommendedActions=list(r.recommended_actions),
    )


def case_detail(c: app_experts.Case) -> CaseDetail:
    return CaseDetail(**case_info(c).model_dump(), alerts=[alert_info(a) for a in c.alerts],
                      investigations=list(c.investigations))


@router.post("/experts/cases", status_code=201, response_model=CaseInfo)
def ask(body: AskBody, request: Request, _: Principal = requires(Permission.ALERTS_INVESTIGATION)) -> CaseInfo:
    with edge.translated():
        c = app_experts.ask(edge.store(request), services(request).clock, edge.principal(request), body.sourceType,
                            body.sourceId, body.question, body.expertGroup, body.slaHours,
                            notify=ExpertNotifier(services(request).settings))
    return case_info(c)


@router.get("/experts/cases", response_model=CaseList)
def list_cases(request: Request, _: Principal = requires(Permission.VIEW_DATA_SECOPS)) -> CaseList:
    with edge.translated():
        found = app_experts.cases(edge.store(request), services(request).clock, edge.principal(request))
    return CaseList(value=[case_info(c) for c in found])


@router.get("/experts/cases/{case_id}", response_model=CaseDetail)
def get_case(case_id: int, request: Request, _: Principal = requires(Permission.VIEW_DATA_SECOPS)) -> CaseDetail:
    with edge.translated():
        c = app_experts.case(edge.store(request), services(request).clock, edge.principal(request), case_id)
    return case_detail(c)


@router.post("/experts/cases/{case_id}/answer", response_model=CaseDetail)
def answer(case_id: int, body: AnswerBody, request: Request,
           _: Principal = requires(Permission.VIEW_DATA_SECOPS)) -> CaseDetail:
    """The expert group's answer (membership is checked by the service: a read-only MSSP account may answer)."""
    with edge.translated():
        c = app_experts.answer(edge.store(request), services(request).clock, edge.principal(request), case_id,
                               body.answer, body.huntingQueries, body.recommendedActions,
                               notify=ExpertNotifier(services(request).settings))
    return case_detail(c)


@router.post("/experts/targetedAttackNotifications", status_code=201, response_model=CaseInfo)
def notify(body: NotificationBody, request: Request,
           _: Principal = requires(Permission.VIEW_DATA_SECOPS)) -> CaseInfo:
    with edge.translated():
        c = app_experts.targeted_attack_notification(
            edge.store(request), services(request).clock, edge.principal(request), body.expertGroup,
            body.machineGroupId, body.title, body.details, notify=ExpertNotifier(services(request).settings))
    return case_info(c)
