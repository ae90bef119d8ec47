"""Portal pages for devices: the inventory, the device page with its timeline, offboarding, and the identity
changes a device reported (accepted or rejected by an administrator)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from vigil.app import devices as app_devices
from vigil.app.errors import AppError
from vigil.core.rbac import Permission
from vigil.core.telemetry import TABLES
from vigil.server import app_edge as edge
from vigil.server.api import alerts as api_alerts
from vigil.server.api import incidents as api_incidents
from vigil.server.api import machineidentity as api_identity
from vigil.server.api import machines as api_machines
from vigil.server.auth import CSRF_COOKIE, Principal, current_principal, services
from vigil.server.errors import APIError
from vigil.server.portal.web import check_form_csrf, page, page_request, paging_of, refused, templates

router = APIRouter(include_in_schema=False)
DECIDE = Permission.MANAGE_PORTAL_SETTINGS  # as the API's accept and reject routes


@router.get("/devices", response_class=HTMLResponse)
def devices_page(request: Request, who: Principal = page(Permission.VIEW_DATA_SECOPS)) -> Response:
    """The inventory, 50 a page: the store pages, sorts and searches (name, id, addresses, group, OS, tags)."""
    req = page_request(request, "name", default_desc=False)
    with edge.translated():
        found = app_devices.page_devices(edge.store(request), services(request).clock, edge.principal(request), req)
    pg, machines = paging_of(request, req, found.total), [api_machines.machine_of(d) for d in found.rows]
    return templates.TemplateResponse(request, "devices/list.html", {
        "machines": machines, "pg": pg, "q": request.query_params.get("q", ""), "user": who.user})


# The timeline's columns per table: (header, column); "all" shows what every table has plus a one-line summary.
_INITIATOR = [("Initiating process", "InitiatingProcessFileName"), ("Initiating PID", "InitiatingProcessId")]
TIMELINE_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "DeviceProcessEvents": [("Process", "FileName"), ("Command line", "ProcessCommandLine"), ("User", "AccountName"),
                            ("PID", "ProcessId"), ("Parent", "InitiatingProcessFileName"),
                            ("Parent PID", "InitiatingProcessId"), ("SHA-256", "SHA256")],
    "DeviceNetworkEvents": [("Remote IP", "RemoteIP"), ("Remote port", "RemotePort"), ("Remote URL", "RemoteUrl"),
                            ("Local IP", "LocalIP"), ("Local port", "LocalPort"), ("Protocol", "Protocol"),
                            *_INITIATOR],
    "DeviceFileEvents": [("File", "FileName"), ("Folder", "FolderPath"), ("SHA-256", "SHA256"),
                         ("Size", "FileSize"), *_INITIATOR],
    "DeviceLogonEvents": [("Account", "AccountName"), ("Logon type", "LogonType"), ("Remote IP", "RemoteIP"),
                          ("Failure", "FailureReason"), *_INITIATOR],
    "DeviceEvents": [("File", "FileName"), ("Command line", "ProcessCommandLine"), ("Remote IP", "RemoteIP"),
                     *_INITIATOR],
    "DeviceInfo": [("OS", "OSDistribution"), ("Version", "OSVersion"), ("Public IP", "PublicIP"),
                   ("Client", "ClientVersion")],
    "DeviceSystemLogEvents": [("Process", "ProcessName"), ("PID", "ProcessId"), ("Unit", "SystemdUnit"),
                              ("Message", "SyslogMessage")],
}
_SUMMARY = ("ProcessCommandLine", "FolderPath", "RemoteIP", "AccountName", "SyslogMessage", "OSDistribution")
RANGES = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30)}
PAGE_SIZE = 100


def _summary(e: dict[str, Any]) -> str:
    for k in _SUMMARY:
        if e.get(k):
            return f"{e[k]}" + (f":{e['RemotePort']}" if k == "RemoteIP" and e.get("RemotePort") else "")
    return ""


@router.get("/devices/{machine_id}", response_class=HTMLResponse)
def device_page(
    machine_id: str, request: Request, table: str = "DeviceProcessEvents", range: str = "30d",
    action: str = "", before: str = "", who: Principal = page(Permission.VIEW_DATA_SECOPS),
) -> Response:
    """The device and its timeline: one table (or all), a time range, an ActionType, 100 rows a page, newest
    first; "Older" pages by the last row's time (keyset), so a device with a million events pages as fast."""
    machine = api_machines.get_machine(request, machine_id)
    if range not in RANGES:
        raise APIError(422, "invalid_request", f"range {range!r}: use one of {', '.join(RANGES)}", field="range")
    if table != "all" and table not in TABLES:
        raise APIError(422, "invalid_request", f"unknown table {table!r}", field="table")
    end = None
    if before:
        try:
            end = datetime.fromisoformat(before.replace("Z", "+00:00"))
        except ValueError:
            raise APIError(422, "invalid_request", f"before {before!r} is not an ISO 8601 time",
                           field="before") from None
        end = end if end.tzinfo else end.replace(tzinfo=UTC)
    now = services(request).clock.now()
    start = now - RANGES[range]
    tables = None if table == "all" else [table]
    # An ActionType filter reads further to fill its page (the store has no ActionType index yet).
    want = PAGE_SIZE + 1
    fetched = _timeline(request, machine_id, start, end, tables, want * (20 if action else 1))
    if end is not None:  # the cursor row itself was the last of the previous page
        fetched = [e for e in fetched if _when(e) < end]
    events = [e for e in fetched if not action or e.get("ActionType") == action][:want]
    more, events = len(events) > PAGE_SIZE, events[:PAGE_SIZE]
    for e in events:
        e["_summary"] = _summary(e)
    older = None
    if more:
        older = "?" + urlencode({"table": table, "range": range, "action": action, "before": _iso(_when(events[-1]))})
    actions = sorted({str(e["ActionType"]) for e in fetched if e.get("ActionType")} | ({action} if action else set()))
    return templates.TemplateResponse(
        request, "devices/device.html",
        {"m": machine, "events": events, "table": table, "tables": ["all", *TABLES], "user": who.user,
         "columns": TIMELINE_COLUMNS.get(table), "range": range, "ranges": list(RANGES), "action": action,
         "actions": actions, "older": older, "paged": bool(before),
         "first_page": "?" + urlencode({"table": table, "range": range, "action": action}),
         "alerts": api_alerts.query_alerts(request, machine_id=machine_id, limit=20),
         "incidents": [i for i in api_incidents.list_incidents(request) if machine_id in i.machineIds][:20]},
    )


def _timeline(
    request: Request, machine_id: str, start: datetime | None, end: datetime | None, tables: list[str] | None,
    limit: int,
) -> list[dict[str, Any]]:
    with edge.translated():
        return app_devices.timeline(edge.store(request), services(request).clock, edge.principal(request),
                                    machine_id, start, end, tables, limit)


def _when(e: dict[str, Any]) -> datetime:
    t = e["Timestamp"]
    t = t if isinstance(t, datetime) else datetime.fromisoformat(str(t).replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _iso(t: datetime) -> str:
    return t.isoformat()


TREE_DEPTH = 6
TREE_EVENTS = 20_000


@router.get("/devices/{machine_id}/process-tree", response_class=HTMLResponse)
def process_tree(
    machine_id: str, request: Request, pid: int, who: Principal = page(Permission.VIEW_DATA_SECOPS),
) -> Response:
    """A process with its parents and children (command lines), from the device's DeviceProcessEvents (30 days)."""
    machine = api_machines.get_machine(request, machine_id)
    events = _timeline(request, machine_id, None, None, ["DeviceProcessEvents"], TREE_EVENTS)
    by_pid: dict[int, dict[str, Any]] = {}
    children: dict[int, list[int]] = {}
    for e in reversed(events):  # oldest first: a reused PID keeps its newest process
        if e.get("ProcessId") is None:
            continue
        by_pid[int(e["ProcessId"])] = e
    for p_id, e in by_pid.items():
        if e.get("InitiatingProcessId") is not None:
            children.setdefault(int(e["InitiatingProcessId"]), []).append(p_id)
    if pid not in by_pid:
        raise APIError(404, "not_found", f"no process {pid} in this device's last 30 days of process events",
                       field="pid")

    def node(p_id: int) -> dict[str, Any]:
        e = by_pid.get(p_id, {})
        return {"pid": p_id, "name": e.get("FileName"), "cmd": e.get("ProcessCommandLine"),
                "user": e.get("AccountName"), "time": e.get("Timestamp"), "known": bool(e)}

    ancestors: list[dict[str, Any]] = []
    cur = by_pid[pid]
    seen = {pid}
    while cur.get("InitiatingProcessId") is not None and len(ancestors) < TREE_DEPTH:
        parent = int(cur["InitiatingProcessId"])
        if parent in seen:
            break
        seen.add(parent)
        if parent in by_pid:
            ancestors.insert(0, node(parent))
            cur = by_pid[parent]
        else:  # the parent started before the sensor saw it: what its child reported of it
            ancestors.insert(0, {"pid": parent, "name": cur.get("InitiatingProcessFileName"),
                                 "cmd": cur.get("InitiatingProcessCommandLine"), "user": None, "time": None,
                                 "known": False})
            break

    def subtree(p_id: int, depth: int) -> dict[str, Any]:
        n = node(p_id)
        kids = [k for k in children.get(p_id, []) if k != p_id] if depth < TREE_DEPTH else []
        n["children"] = [subtree(k, depth + 1) for k in kids[:50]]
        return n

    return templates.TemplateResponse(request, "devices/process_tree.html", {
        "m": machine, "user": who.user, "ancestors": ancestors, "focus": subtree(pid, 0), "pid": pid,
    })


@router.post("/devices/{machine_id}/offboard")
def offboard_submit(
    machine_id: str, request: Request, csrf: Annotated[str, Form()], comment: Annotated[str, Form()] = "",
    who: Principal = page(Permission.MANAGE_SECURITY_SETTINGS),
) -> Response:
    check_form_csrf(request, csrf)
    try:
        app_devices.offboard(edge.store(request), services(request).clock, edge.principal(request), machine_id,
                             comment.strip() or None)
    except AppError as e:
        return refused(request, who, e)
    return RedirectResponse(f"/devices/{machine_id}", status_code=303)


def offboard_context(request: Request) -> dict[str, object]:
    """What the device page's offboard form needs; a template global, as device_actions_context is."""
    who = current_principal(request)
    allowed = who is not None and Permission.MANAGE_SECURITY_SETTINGS in who.permissions
    return {"allowed": allowed, "csrf": request.cookies.get(CSRF_COOKIE, "") if allowed else ""}


templates.env.globals["offboard_context"] = offboard_context


def device_identity_context(request: Request, machine_id: str) -> dict[str, Any]:
    """A template global (device.html includes device_identity.html): the changes and whether the caller decides."""
    who = current_principal(request)
    if who is None:
        return {"identity_changes": [], "can_decide": False, "csrf": ""}
    request.state.principal = who
    return {"identity_changes": api_identity.identity_changes(request, machine_id),
            "can_decide": DECIDE in who.permissions, "csrf": request.cookies.get(CSRF_COOKIE, "")}


templates.env.globals["device_identity_context"] = device_identity_context


@router.post("/devices/{machine_id}/identity/{change_id}/{decision}")
def decide_identity_change(
    machine_id: str, change_id: int, decision: str, request: Request, csrf: Annotated[str, Form()],
    revision: Annotated[int, Form()], comment: Annotated[str, Form()] = "",
    who: Principal = page(DECIDE),
) -> Response:
    check_form_csrf(request, csrf)
    if decision not in ("accept", "reject"):
        raise APIError(404, "not_found", f"no decision {decision!r}; use accept or reject", field="decision")
    request.state.principal = who
    api_identity.decide(request, machine_id, change_id, decision == "accept",
                        api_identity.DecisionBody(Revision=revision, Comment=comment or None))
    return RedirectResponse(f"/devices/{machine_id}", status_code=303)
