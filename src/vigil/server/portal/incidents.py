"""Portal pages for incidents: the list and one incident with its alerts."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from vigil.core.rbac import Permission
from vigil.server.api import incidents as api_incidents
from vigil.server.api import machines as api_machines
from vigil.server.auth import Principal
from vigil.server.portal.web import page, paginate, templates

router = APIRouter(include_in_schema=False)


@router.get("/incidents", response_class=HTMLResponse)
def incidents_page(
    request: Request, status: str = "", severity: str = "", who: Principal = page(Permission.VIEW_DATA_SECOPS),
) -> Response:
    names = {m["id"]: m["computerDnsName"] for m in api_machines.list_machines(request)}
    rows = [i for i in api_incidents.list_incidents(request)
            if (not status or i["status"] == status) and (not severity or i["severity"] == severity)]
    rank = {"High": 3, "Medium": 2, "Low": 1, "Informational": 0}
    pg, rows = paginate(request, rows, {
        "lastActivity": lambda i: i.get("lastActivityTime") or "", "severity": lambda i: rank.get(i["severity"], -1),
        "name": lambda i: i["incidentName"].lower(), "status": lambda i: i["status"],
    }, "lastActivity", lambda i: " ".join([i["incidentName"], str(i["incidentId"]), i.get("assignedTo") or "",
                                          *(names.get(d, d) for d in i.get("machineIds", []))]))
    return templates.TemplateResponse(
        request, "incidents/list.html",
        {"incidents": rows, "names": names, "user": who.user, "pg": pg, "status": status, "severity": severity,
         "q": request.query_params.get("q", "")},
    )


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
def incident_page(
    incident_id: int, request: Request, who: Principal = page(Permission.VIEW_DATA_SECOPS)
) -> Response:
    names = {m["id"]: m["computerDnsName"] for m in api_machines.list_machines(request)}
    inc = api_incidents.get_incident_json(request, incident_id)
    return templates.TemplateResponse(request, "incidents/incident.html", {"i": inc, "names": names, "user": who.user})
