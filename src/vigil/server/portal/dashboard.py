"""The dashboard, the portal's landing page: alerts over time by severity, open incidents, devices by health and
sensor state, event loss and sensor coverage, the top alerting rules and devices.

Every figure comes from the same scoped services as the lists (a group-scoped analyst sees their devices' figures
only); the charts are drawn in the browser by Chart.js, served by Vigil itself (``/static/vendor``)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from vigil.core.rbac import Permission
from vigil.server.api import alerts as api_alerts
from vigil.server.api import incidents as api_incidents
from vigil.server.api import machines as api_machines
from vigil.server.auth import current_principal, services
from vigil.server.portal.web import landing, public_page, templates

router = APIRouter(include_in_schema=False)

SEVERITIES = ("High", "Medium", "Low", "Informational")
DAYS = 14
# The dashboard counts over the newest alerts up to this many (the alerts list pages through all of them).
ALERT_SAMPLE = 10_000
CLOSED_INCIDENTS = {"Resolved", "Redirected"}


def _day(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC).date().isoformat()
    except ValueError:
        return None


def figures(alerts: list[api_alerts.AlertInfo], incidents: list[api_incidents.IncidentInfo],
            machines: list[api_machines.Machine], now: datetime) -> dict[str, Any]:
    """Everything the dashboard shows, as plain data (also the JSON its charts are drawn from)."""
    days = [(now.astimezone(UTC).date() - timedelta(days=DAYS - 1 - i)).isoformat() for i in range(DAYS)]
    per_day = {s: dict.fromkeys(days, 0) for s in SEVERITIES}
    for a in alerts:
        d = _day(a.alertCreationTime)
        sev = a.severity
        sev = sev if sev in per_day else "Informational"
        if d is not None and d in per_day[sev]:
            per_day[sev][d] += 1
    names = {m.id: m.computerDnsName for m in machines}
    open_alerts = [a for a in alerts if a.status != "Resolved"]
    open_incidents = [i for i in incidents if i.status not in CLOSED_INCIDENTS]
    sensors: Counter[str] = Counter()
    covered = 0
    produced = dropped = 0
    drop_reasons: Counter[str] = Counter()
    for m in machines:
        states = m.sensorHealth
        sensors.update(str(v) for v in states.values())
        if states and all(str(v).lower() in ("running", "ok", "healthy") for v in states.values()):
            covered += 1
        produced += m.eventCounters.produced
        for reason, n in m.eventCounters.dropped.items():
            drop_reasons[reason] += int(n)
            dropped += int(n)
    return {
        "days": days,
        "alerts_by_day": {s: list(per_day[s].values()) for s in SEVERITIES},
        "alerts_total": len(alerts), "alerts_open": len(open_alerts),
        "open_by_severity": {s: sum(1 for a in open_alerts if a.severity == s) for s in SEVERITIES},
        "incidents_open": len(open_incidents),
        "incidents": [{"id": i.incidentId, "name": i.incidentName, "severity": i.severity, "status": i.status}
                      for i in open_incidents[:8]],
        "devices_total": len(machines),
        "devices_by_health": dict(Counter(m.healthStatus or "Unknown" for m in machines).most_common()),
        "sensors_by_state": dict(sensors.most_common()),
        "coverage": {"covered": covered, "total": len(machines)},
        "events": {"produced": produced, "dropped": dropped, "reasons": dict(drop_reasons.most_common())},
        "top_rules": [{"title": t, "count": n} for t, n in Counter(a.title for a in alerts).most_common(5)],
        "top_devices": [{"id": d, "name": names.get(d, d), "count": n}
                        for d, n in Counter(a.machineId for a in alerts if a.machineId).most_common(5)],
    }


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, _: None = public_page()) -> Response:
    """Public as a route, so that a visitor is sent on: to sign in, or to the first page they may see."""
    who = current_principal(request)
    if who is None:
        return RedirectResponse("/login", status_code=303)
    if Permission.VIEW_DATA_SECOPS not in who.permissions:
        return RedirectResponse(landing(who), status_code=303)
    request.state.principal = who
    machines = api_machines.list_machines(request)
    data = figures(api_alerts.query_alerts(request, limit=ALERT_SAMPLE), api_incidents.list_incidents(request),
                   machines, services(request).clock.now())
    # A JSON data island (not run as script, so the CSP allows it); "</" cannot appear escaped this way.
    island = Markup(orjson.dumps(data).decode().replace("</", "<\\/"))  # noqa: S704 - JSON, "</" escaped
    return templates.TemplateResponse(request, "dashboard/dashboard.html", {
        "user": who.user, "d": data, "island": island, "severities": SEVERITIES,
    })
