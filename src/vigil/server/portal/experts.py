"""Portal pages for ask an expert: the cases the user may see (and a form to ask), one case with its scoped evidence,
and the expert group's answer form — over the same service as /api/experts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from vigil.app import experts as app_experts
from vigil.app.errors import AppError, InvalidInput, NotFound
from vigil.core.rbac import Permission
from vigil.server import app_edge as edge
from vigil.server.api import experts as api_experts
from vigil.server.auth import CSRF_COOKIE, Principal, services
from vigil.server.notify import ExpertNotifier
from vigil.server.portal.web import check_form_csrf, page, refused, templates

router = APIRouter(include_in_schema=False)


def _blocks(text: str) -> list[str]:
    """Hunting queries, one per block of lines separated by a blank line."""
    return [b.strip() for b in text.replace("\r\n", "\n").split("\n\n") if b.strip()]


def _lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


@router.get("/experts", response_class=HTMLResponse)
def cases_page(request: Request, source_type: str = "Alert", source_id: str = "",
               who: Principal = page(Permission.VIEW_DATA_SECOPS)) -> Response:
    try:
        found = app_experts.cases(edge.store(request), services(request).clock, edge.principal(request))
    except AppError as e:
        return refused(request, who, e)
    return templates.TemplateResponse(request, "experts/list.html", {
        "user": who.user, "rows": [api_experts.case_info(c).model_dump() for c in found],
        "can_ask": Permission.ALERTS_INVESTIGATION in who.permissions, "sources": app_experts.SOURCES,
        "source_type": source_type if source_type in app_experts.SOURCES else "Alert", "source_id": source_id,
        "csrf": request.cookies.get(CSRF_COOKIE, ""),
    })


@router.post("/experts/ask")
def ask(request: Request, csrf: Annotated[str, Form()], source_type: Annotated[str, Form()],
        source_id: Annotated[str, Form()], question: Annotated[str, Form()], expert_group: Annotated[str, Form()],
        sla_hours: Annotated[str, Form()] = "24", who: Principal = page(Permission.ALERTS_INVESTIGATION)) -> Response:
    check_form_csrf(request, csrf)
    try:
        hours = int(sla_hours)
    except ValueError:
        return refused(request, who, InvalidInput("slaHours must be a whole number of hours", field="slaHours"))
    try:
        c = app_experts.ask(edge.store(request), services(request).clock, edge.principal(request), source_type,
                            source_id.strip(), question, expert_group.strip(), hours,
                            notify=ExpertNotifier(services(request).settings))
    except AppError as e:
        return refused(request, who, e)
    return RedirectResponse(f"/experts/{c.record.id}", status_code=303)


@router.get("/experts/{case_id}", response_class=HTMLResponse)
def case_page(case_id: str, request: Request, who: Principal = page(Permission.VIEW_DATA_SECOPS)) -> Response:
    try:
        if not case_id.isdigit():
            raise NotFound(f"no expert case with id {case_id!r}", field="id")
        c = app_experts.case(edge.store(request), services(request).clock, edge.principal(request), int(case_id))
    except AppError as e:
        return refused(request, who, e)
    return templates.TemplateResponse(request, "experts/detail.html", {
        "user": who.user, "case": api_experts.case_detail(c).model_dump(), "expert": c.expert,
        "csrf": request.cookies.get(CSRF_COOKIE, ""),
    })


@router.post("/experts/{case_id}/answer")
def answer(case_id: int, request: Request, csrf: Annotated[str, Form()], answer: Annotated[str, Form()],
           hunting_queries: Annotated[str, Form()] = "", recommended_actions: Annotated[str, Form()] = "",
           who: Principal = page(Permission.VIEW_DATA_SECOPS)) -> Response:
    """The expert group's answer; membership is checked by the service, as for the API."""
    check_form_csrf(request, csrf)
    try:
        app_experts.answer(edge.store(request), services(request).clock, edge.principal(request), case_id, answer,
                           _blocks(hunting_queries), _lines(recommended_actions),
                           notify=ExpertNotifier(services(request).settings))
    except AppError as e:
        return refused(request, who, e)
    return RedirectResponse(f"/experts/{case_id}", status_code=303)
