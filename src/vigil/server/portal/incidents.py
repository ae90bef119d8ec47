"""Portal pages for incidents: the list and one incident with its alerts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from vigil.app import incidents as app_incidents
from vigil.app.errors import AppError
from vigil.app.ports import IncidentUpdate
from vigil.core.alerts import Classification, Determination
from vigil.core.incidents import IncidentStatus
from vigil.core.rbac import Permission
from vigil.server import app_edge as edge
from vigil.server.api import incidents as api_incidents
from vigil.server.api import machines as api_machines
from vigil.server.auth import CSRF_COOKIE, Principal, services
from vigil.server.errors import APIError
from vigil.server.portal.web import check_form_csrf, page, page_request, paging_of, refused, templates

router = APIRouter(include_in_schema=False)


@router.get("/incidents", response_class=HTMLResponse)
def incidents_page(
    request: Request, status: str = "", severity: str = "", who: Principal = page(Permission.VIEW_DATA_SECOPS),
) -> Response:
    """Incidents, 50 a page: the store pages, sorts and searches (name, id, assignee, device names)."""
    req = page_request(request, "lastActivity")
    try:
        found = app_incidents.page_incidents(edge.store(request), services(request).clock, edge.principal(request),
                                             req, status or None, severity or None)
    except AppError as e:
        return refused(request, who, e)
    names = {m.id: m.computerDnsName for m in api_machines.list_machines(request)}
    pg, rows = paging_of(request, req, found.total), [api_incidents.incident_info(i) for i in found.rows]
    return templates.TemplateResponse(
        request, "incidents/list.html",
        {"incidents": rows, "names": names, "user": who.user, "pg": pg, "status": status, "severity": severity,
         "q": request.query_params.get("q", "")},
    )


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
def incident_page(
    incident_id: int, request: Request, who: Principal = page(Permission.VIEW_DATA_SECOPS)
) -> Response:
    names = {m.id: m.computerDnsName for m in api_machines.list_machines(request)}
    inc = api_incidents.get_incident_json(request, incident_id)
    return templates.TemplateResponse(request, "incidents/incident.html", {
        "i": inc, "names": names, "user": who.user, "csrf": request.cookies.get(CSRF_COOKIE, ""),
        "can_edit": Permission.ALERTS_INVESTIGATION in who.permissions,
        "statuses": [s.value for s in IncidentStatus if s is not IncidentStatus.REDIRECTED],
        "classifications": [c.value for c in Classification], "determinations": [d.value for d in Determination],
    })


@router.post("/incidents/{incident_id}")
def incident_update(
    incident_id: int, request: Request, csrf: Annotated[str, Form()], status: Annotated[str, Form()] = "",
    assigned_to: Annotated[str, Form()] = "", classification: Annotated[str, Form()] = "",
    determination: Annotated[str, Form()] = "", assign_to_me: Annotated[str, Form()] = "",
    who: Principal = page(Permission.ALERTS_INVESTIGATION),
) -> Response:
    """Assign, classify and resolve; the service validates each value and audits what changed."""
    check_form_csrf(request, csrf)
    owner = who.user.username if assign_to_me else assigned_to.strip()
    if len(owner) > 128:
        raise APIError(422, "invalid_request", "assigned to: at most 128 characters", field="assignedTo")
    change = IncidentUpdate(status=status or None, assigned_to=owner or None,
                            classification=classification or None, determination=determination or None)
    try:
        app_incidents.update_incident(edge.store(request), services(request).clock, edge.principal(request),
                                      incident_id, change)
    except AppError as e:
        return refused(request, who, e)
    return RedirectResponse(f"/incidents/{incident_id}", status_code=303)


@router.post("/incidents/{incident_id}/merge")
def incident_merge(
    incident_id: int, request: Request, csrf: Annotated[str, Form()], incidents: Annotated[str, Form()] = "",
    who: Principal = page(Permission.ALERTS_INVESTIGATION),
) -> Response:
    """Merge the listed incidents (ids separated by commas or spaces) into this one."""
    check_form_csrf(request, csrf)
    words = incidents.replace(",", " ").split()
    bad = [w for w in words if not w.lstrip("#").isdigit()]
    if bad or not words:
        raise APIError(422, "invalid_request", f"incidents to merge: {bad[0]!r} is not an incident id" if bad
                       else "incidents to merge: give at least one incident id", field="incidentIds")
    try:
        app_incidents.merge_incidents(edge.store(request), services(request).clock, edge.principal(request),
                                      incident_id, [int(w.lstrip("#")) for w in words])
    except AppError as e:
        return refused(request, who, e)
    return RedirectResponse(f"/incidents/{incident_id}", status_code=303)
