"""Portal pages for incidents: the list and one incident with its alerts."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from vigil.core.rbac import Permission
from vigil.server.api import incidents as api_incidents
from vigil.server.api import machines as api_machines
from vigil.server.auth import Principal
from vigil.server.portal.web import page, templates

router = APIRouter(include_in_schema=False)


@router.get("/incidents", response_class=HTMLResponse)
def incidents_page(request: Request, who: Principal = page(Permission.VIEW_DATA_SECOPS)) -> Response:
    names = {m["id"]: m["computerDnsName"] for m in api_machines.list_machines(request)}
    return templates.TemplateResponse(
        request, "incidents/list.html",
        {"incidents": api_incidents.list_incidents(request), "names": names, "user": who.user},
    )


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
def incident_page(
    incident_id: int, request: Request, who: Principal = page(Permission.VIEW_DATA_SECOPS)
) -> Response:
    names = {m["id"]: m["computerDnsName"] for m in api_machines.list_machines(request)}
    inc = api_incidents.get_incident_json(request, incident_id)
    return templates.TemplateResponse(request, "incidents/incident.html", {"i": inc, "names": names, "user": who.user})
