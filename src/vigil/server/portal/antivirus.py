"""Portal page for the antivirus across devices: each device's protection state, the threats found, and the
antivirus policy of each device group with a form to change it (through vigil.app.antivirus: permission, audit,
signed delivery)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from vigil.app import alerts as app_alerts
from vigil.app import antivirus as av_service
from vigil.app import devices as app_devices
from vigil.app.errors import AppError
from vigil.av.policy import ACTIONS, MODES, PUA_MODES, THREAT_TYPES
from vigil.core.alerts import DetectionSource
from vigil.core.rbac import Permission
from vigil.server import app_edge as edge
from vigil.server.antivirus import protection_fields
from vigil.server.auth import CSRF_COOKIE, Principal, services
from vigil.server.portal.web import check_form_csrf, page, refused, templates

router = APIRouter(include_in_schema=False)


@router.get("/antivirus", response_class=HTMLResponse)
def antivirus_page(request: Request, who: Principal = page(Permission.VIEW_DATA_SECOPS)) -> Response:
    store, clock, caller = edge.store(request), services(request).clock, edge.principal(request)
    try:
        devices = app_devices.list_devices(store, clock, caller)
        alerts = [a for a in app_alerts.list_alerts(store, clock, caller)
                  if a.detection_source == DetectionSource.ANTIVIRUS.value]
        policies = av_service.policies(store, clock, caller)
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
        "policies": policies, "csrf": request.cookies.get(CSRF_COOKIE, ""),
        "can_edit": Permission.MANAGE_SECURITY_SETTINGS in who.permissions,
        "modes": MODES, "pua_modes": PUA_MODES, "threat_types": THREAT_TYPES, "actions": ACTIONS,
    })


@router.post("/antivirus/policy")
def antivirus_policy(
    request: Request, csrf: Annotated[str, Form()], group: Annotated[str, Form()] = "default",
    realtime: Annotated[str, Form()] = "", mode: Annotated[str, Form()] = "", pua_mode: Annotated[str, Form()] = "",
    malware: Annotated[str, Form()] = "", pua: Annotated[str, Form()] = "", test: Annotated[str, Form()] = "",
    heuristic: Annotated[str, Form()] = "", allowed_threats: Annotated[str, Form()] = "",
    who: Principal = page(Permission.MANAGE_SECURITY_SETTINGS),
) -> Response:
    """The form's settings over the group's policy ("" leaves a setting unset: the default's, or the agent's)."""
    check_form_csrf(request, csrf)
    store, clock, caller = edge.store(request), services(request).clock, edge.principal(request)
    try:
        raw: dict[str, Any] = av_service.policy(store, clock, caller, group).policy.as_dict()
        for key, value in (("mode", mode), ("pua_mode", pua_mode)):
            raw.pop(key, None)
            if value:
                raw[key] = value
        raw.pop("realtime", None)
        if realtime:
            raw["realtime"] = realtime == "on"
        actions = {k: v for k, v in (("malware", malware), ("pua", pua), ("test", test), ("heuristic", heuristic))
                   if v}
        raw.pop("threat_actions", None)
        if actions:
            raw["threat_actions"] = actions
        names = [n.strip() for n in allowed_threats.replace("\n", ",").split(",") if n.strip()]
        raw.pop("allowed_threats", None)
        if names:
            raw["allowed_threats"] = names
        av_service.set_policy(store, clock, caller, group, raw)
    except AppError as e:
        return refused(request, who, e)
    return RedirectResponse(f"/antivirus#policy-{group}", status_code=303)
