"""Portal pages for the analyst's queue: alerts, with their update form."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from vigil.app import alerts as app_alerts
from vigil.core.alerts import AlertStatus, Classification, Determination
from vigil.core.rbac import Permission
from vigil.server import app_edge as edge
from vigil.server.api import alerts as api_alerts
from vigil.server.api import machines as api_machines
from vigil.server.auth import CSRF_COOKIE, Principal, services
from vigil.server.errors import APIError
from vigil.server.portal import actions as portal_actions
from vigil.server.portal.web import check_form_csrf, page, page_request, paging_of, templates

router = APIRouter(include_in_schema=False)


@router.get("/alerts", response_class=HTMLResponse)
def alerts_page(
    request: Request, status: str | None = None, severity: str | None = None,
    who: Principal = page(Permission.VIEW_DATA_SECOPS),
) -> Response:
    """The queue, 50 a page: the store pages, sorts and searches (title, id, category, device, account, ...)."""
    req = page_request(request, "lastActivity")
    with edge.translated():
        found = app_alerts.page_alerts(edge.store(request), services(request).clock, edge.principal(request), req,
                                       status=status or None, severity=severity or None)
    names = {m.id: m.computerDnsName for m in api_machines.list_machines(request)}
    pg, rows = paging_of(request, req, found.total), [api_alerts.alert_info(a) for a in found.rows]
    return templates.TemplateResponse(
        request, "alerts/list.html",
        {"alerts": rows, "names": names, "status": status, "severity": severity, "user": who.user, "pg": pg,
         "q": request.query_params.get("q", "")},
    )


@router.get("/alerts/{alert_id}", response_class=HTMLResponse)
def alert_page(alert_id: str, request: Request, who: Principal = page(Permission.VIEW_DATA_SECOPS)) -> Response:
    a = api_alerts.get_alert_json(request, alert_id)
    if a.machineId is None:
        return identity_alert_page(request, a, who)
    m = api_machines.get_machine(request, a.machineId)
    return templates.TemplateResponse(
        request, "alerts/alert.html",
        {
            "a": a, "m": m, "user": who.user, "csrf": request.cookies.get(CSRF_COOKIE, ""),
            "can_edit": Permission.ALERTS_INVESTIGATION in who.permissions,
            "respond": portal_actions.alert_actions(who, a.evidence),
            "statuses": [s.value for s in AlertStatus if s is not AlertStatus.UNKNOWN],
            "classifications": [c.value for c in Classification],
            "determinations": [d.value for d in Determination],
        },
    )


@router.post("/alerts/{alert_id}")
def alert_update(
    alert_id: str, request: Request, csrf: Annotated[str, Form()], status: Annotated[str, Form()] = "",
    classification: Annotated[str, Form()] = "", determination: Annotated[str, Form()] = "",
    comment: Annotated[str, Form()] = "", assign_to_me: Annotated[str, Form()] = "",
    who: Principal = page(Permission.ALERTS_INVESTIGATION),
) -> Response:
    check_form_csrf(request, csrf)
    try:
        body = api_alerts.AlertPatch(
            status=status or None, classification=classification or None,  # type: ignore[arg-type]
            determination=determination or None, comment=comment.strip() or None,  # type: ignore[arg-type]
            assignedTo=who.user.username if assign_to_me else None,
        )
    except ValidationError as e:
        raise APIError(422, "invalid_request", str(e.errors()[0]["msg"])) from None
    api_alerts.change_alert(request, alert_id, body, who)
    return RedirectResponse(f"/alerts/{alert_id}", status_code=303)


def identity_alert_page(request: Request, a: api_alerts.AlertDetail, who: Principal) -> Response:
    """An alert about a Vigil account rather than a device: no device facts, no device response actions."""
    return templates.TemplateResponse(
        request, "alerts/identity.html",
        {
            "a": a, "user": who.user, "csrf": request.cookies.get(CSRF_COOKIE, ""),
            "can_edit": Permission.ALERTS_INVESTIGATION in who.permissions,
            "statuses": [s.value for s in AlertStatus if s is not AlertStatus.UNKNOWN],
            "classifications": [c.value for c in Classification],
            "determinations": [d.value for d in Determination],
        },
    )
