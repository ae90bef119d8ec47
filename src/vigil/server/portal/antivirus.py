"""Portal page for the antivirus across devices: each device's protection state, and the threats found."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from vigil.app import alerts as app_alerts
from vigil.app import devices as app_devices
from vigil.app.errors import AppError
from vigil.core.alerts import DetectionSource
from vigil.core.rbac import Permission
from vigil.server import app_edge as edge
from vigil.server.antivirus import protection_fields
from vigil.server.auth import Principal, services
from vigil.server.portal.web import page, refused, templates

router = APIRouter(include_in_schema=False)


@router.get("/antivirus", response_class=HTMLResponse)
def antivirus_page(request: Request, who: Principal = page(Permission.VIEW_DATA_SECOPS)) -> Response:
    store, clock, caller = edge.store(request), services(request).clock, edge.principal(request)
    try:
        devices = app_devices.list_devices(store, clock, caller)
        alerts = [a for a in app_alerts.list_alerts(store, clock, caller)
                  if a.detection_source == DetectionSource.ANTIVIRUS.value]
    except AppError as e:
        return refused(request, who, e)
    names = {d.record.id: d.record.computer_dns_name for d in devices}
    states = [{"id": d.record.id, "name": d.record.computer_dns_name, "group": d.record.group_name,
               **protection_fields(d.record.sensors)} for d in devices if d.record.offboarded_at is None]
    threats = []
    for a in alerts:
        ev = a.evidence[-1] if a.evidence else {}
        threats.append({"id": a.id, "title": a.title, "severity": a.severity, "status": a.status,
                        "device": names.get(a.machine_id or "", a.machine_id), "machine_id": a.machine_id,
                        "threat": ev.get("ThreatName"), "path": ev.get("FolderPath"), "sha256": ev.get("SHA256"),
                        "action": ev.get("ActionTaken"), "source": ev.get("DetectionSource"),
                        "last": a.last_event_time, "count": a.event_count})
    return templates.TemplateResponse(request, "antivirus/overview.html", {
        "user": who.user, "states": states, "threats": threats,
        "protected": sum(1 for s in states if s["avRealTimeProtection"] == "On"),
    })
