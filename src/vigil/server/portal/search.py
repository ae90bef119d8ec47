"""The global search box: devices, alerts, incidents and users by name, id or address; hashes and command-line
text open Advanced hunting with the query written. One unambiguous hit lands on its page."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from vigil.core.rbac import Permission
from vigil.server.api import alerts as api_alerts
from vigil.server.api import incidents as api_incidents
from vigil.server.api import machines as api_machines
from vigil.server.api import rbac as api_rbac
from vigil.server.auth import Principal
from vigil.server.portal.web import page, templates

router = APIRouter(include_in_schema=False)
MAX_PER_KIND = 20
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclass(frozen=True)
class Hit:
    kind: str
    label: str
    detail: str
    href: str


def _matches(words: list[str], *fields: object) -> bool:
    text = " ".join(str(f) for f in fields if f).lower()
    return all(w in text for w in words)


def _hunt(query: str) -> str:
    return "/hunting?" + urlencode({"query": query})


def _kql_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def hits(request: Request, who: Principal, q: str) -> tuple[list[Hit], list[Hit]]:
    """The records that match every word of ``q``, and the hunting queries worth running for it."""
    words = q.lower().split()
    found: list[Hit] = []
    machines = api_machines.list_machines(request)
    names = {m.id: m.computerDnsName for m in machines}
    found += [Hit("Device", m.computerDnsName, " ".join(filter(None, [m.lastIpAddress, m.rbacGroupName, m.id])),
                  f"/devices/{m.id}") for m in machines
              if _matches(words, m.computerDnsName, m.id, m.lastIpAddress, m.lastExternalIpAddress, m.rbacGroupName,
                          *m.machineTags)][:MAX_PER_KIND]
    found += [Hit("Alert", a.title, f"{a.severity} · {names.get(a.machineId or '', a.machineId or '')}",
                  f"/alerts/{a.id}") for a in api_alerts.query_alerts(request, None, None, None, 10_000)
              if _matches(words, a.title, a.id, names.get(a.machineId or ""), a.machineId, a.assignedTo,
                          a.relatedUser.userName if a.relatedUser else "", *a.mitreTechniques)][:MAX_PER_KIND]
    found += [Hit("Incident", i.incidentName, f"{i.severity} · {i.status}", f"/incidents/{i.incidentId}")
              for i in api_incidents.list_incidents(request)
              if _matches(words, i.incidentName, i.incidentId, i.assignedTo,
                          *(names.get(d, d) for d in i.machineIds))][:MAX_PER_KIND]
    if Permission.MANAGE_PORTAL_SETTINGS in who.permissions:  # the user list is the administrators' to see
        found += [Hit("User", u["username"], " ".join(filter(None, [u["role"], u["email"]])), "/users")
                  for u in api_rbac.users(request, who)["value"]
                  if _matches(words, u["username"], u["email"])][:MAX_PER_KIND]
    text = q.strip()
    hunts: list[Hit] = []
    if _SHA256.match(text):
        hunts.append(Hit("Hunt", "Files and processes with this SHA-256", "Advanced hunting",
                         _hunt(f"DeviceFileEvents | where SHA256 == {_kql_string(text.lower())}")))
        hunts.append(Hit("Hunt", "Processes started from it", "Advanced hunting",
                         _hunt(f"DeviceProcessEvents | where SHA256 == {_kql_string(text.lower())}")))
    elif text:
        hunts.append(Hit("Hunt", "Command lines containing it", "Advanced hunting",
                         _hunt(f"DeviceProcessEvents | where ProcessCommandLine contains {_kql_string(text)}")))
    return found, hunts


@router.get("/search", response_class=HTMLResponse)
def search_page(request: Request, q: str = "", who: Principal = page(Permission.VIEW_DATA_SECOPS)) -> Response:
    found, hunts = hits(request, who, q) if q.strip() else ([], [])
    if len(found) == 1 and not _SHA256.match(q.strip()):
        return RedirectResponse(found[0].href, status_code=303)  # one answer: go straight to it
    return templates.TemplateResponse(request, "search/results.html",
                                      {"user": who.user, "q": q, "hits": found, "hunts": hunts})
