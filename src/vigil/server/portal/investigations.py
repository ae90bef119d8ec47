"""Portal pages for automated investigations: the list with filters, and one investigation with its evidence graph
(drawn), each entity's verdict and reasons, the remediations with approve/reject, and the log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from vigil.air import InvestigationState
from vigil.app import air
from vigil.app.errors import AppError
from vigil.core.rbac import Permission
from vigil.server import app_edge as edge
from vigil.server.api import investigations as api_investigations
from vigil.server.api import machineactions as api_actions
from vigil.server.auth import CSRF_COOKIE, Principal, services
from vigil.server.portal.web import check_form_csrf, page, refused, templates

router = APIRouter(include_in_schema=False)
COLORS = {"Malicious": "#c62828", "Suspicious": "#ef6c00", "NoThreatsFound": "#2e7d32"}
COLUMN, ROW, WIDTH, HEIGHT = 220, 56, 190, 40


@dataclass(frozen=True)
class Node:
    key: str
    x: int
    y: int
    kind: str
    label: str
    verdict: str
    color: str


@dataclass(frozen=True)
class Edge:
    x1: int
    y1: int
    x2: int
    y2: int


def _label(e: dict[str, Any]) -> str:
    f = e.get("facts", {})
    text = f.get("path") or f.get("ip") or f.get("domain") or f.get("account") or f.get("mechanism") or e["key"]
    if e["kind"] == "Process" and f.get("pid"):
        text = f"{str(text).rsplit('/', 1)[-1]} ({f['pid']})"
    text = str(text)
    return text if len(text) <= 28 else "…" + text[-27:]


def graph(entities: list[dict[str, Any]], verdicts: list[dict[str, Any]]) -> tuple[list[Node], list[Edge], int, int]:
    """A layered drawing: each entity one column right of the deepest entity it came from."""
    by_key = {e["key"]: e for e in entities}
    verdict = {v["entityKey"]: v["verdict"] for v in verdicts}
    depth: dict[str, int] = {}

    def depth_of(key: str, seen: frozenset[str] = frozenset()) -> int:
        if key not in depth:
            parents = [p for p in by_key[key].get("parents", []) if p in by_key and p not in seen]
            depth[key] = 1 + max((depth_of(p, seen | {key}) for p in parents), default=-1)
        return depth[key]

    rows: dict[int, int] = {}
    nodes: dict[str, Node] = {}
    for e in entities:
        d = depth_of(e["key"])
        r = rows.get(d, 0)
        rows[d] = r + 1
        v = verdict.get(e["key"], "NoThreatsFound")
        nodes[e["key"]] = Node(e["key"], 10 + d * COLUMN, 10 + r * ROW, e["kind"], _label(e), v, COLORS.get(v, "#555"))
    edges = [Edge(nodes[p].x + WIDTH, nodes[p].y + HEIGHT // 2, n.x, n.y + HEIGHT // 2)
             for e in entities for p in e.get("parents", []) if p in nodes and (n := nodes[e["key"]])]
    width = 20 + (max(rows, default=0) + 1) * COLUMN
    height = 20 + max(rows.values(), default=1) * ROW
    return list(nodes.values()), edges, width, height


@router.get("/investigations", response_class=HTMLResponse)
def investigations_page(request: Request, state: str = "", machine: str = "",
                        who: Principal = page(Permission.VIEW_DATA_SECOPS)) -> Response:
    try:
        found = air.listing(edge.store(request), services(request).clock, edge.principal(request),
                            state=state or None, machine_id=machine or None)
    except AppError as e:
        return refused(request, who, e)
    rows = [api_investigations.info(r).model_dump() for r in found]
    return templates.TemplateResponse(request, "investigations/list.html", {
        "user": who.user, "rows": rows, "state": state, "machine": machine,
        "states": [(s.value, s.label) for s in InvestigationState],
    })


@router.get("/investigations/{investigation_id}", response_class=HTMLResponse)
def investigation_page(investigation_id: str, request: Request,
                       who: Principal = page(Permission.VIEW_DATA_SECOPS)) -> Response:
    request.state.principal = who
    inv = api_investigations.investigation_detail(request, investigation_id)
    nodes, edges, width, height = graph(inv["entities"], inv["verdicts"])
    entities = {e["key"]: e for e in inv["entities"]}
    return templates.TemplateResponse(request, "investigations/detail.html", {
        "user": who.user, "inv": inv, "nodes": nodes, "edges": edges, "width": width, "height": height,
        "node_w": WIDTH, "node_h": HEIGHT, "entities": entities,
        "label": InvestigationState(inv["state"]).label, "csrf": request.cookies.get(CSRF_COOKIE, ""),
        "can_remediate": Permission.REMEDIATION_SECOPS in who.permissions,
        "can_investigate": Permission.ALERTS_INVESTIGATION in who.permissions,
    })


@router.post("/investigations/{investigation_id}/decide")
def decide(
    investigation_id: str, request: Request, csrf: Annotated[str, Form()], decision: Annotated[str, Form()],
    action_id: Annotated[str, Form()], comment: Annotated[str, Form()] = "",
    who: Principal = page(Permission.REMEDIATION_SECOPS),
) -> Response:
    """Approve or reject one pending remediation: the action center's decision, so its rules and audit apply."""
    check_form_csrf(request, csrf)
    request.state.principal = who
    api_actions.decide_many(request, [action_id], decision == "approve",
                            comment or f"{decision} from investigation {investigation_id}")
    return RedirectResponse(f"/investigations/{investigation_id}", status_code=303)


@router.post("/machines/{machine_id}/investigate")
def start_on_device(machine_id: str, request: Request, csrf: Annotated[str, Form()],
                    who: Principal = page(Permission.ALERTS_INVESTIGATION)) -> Response:
    check_form_csrf(request, csrf)
    try:
        inv = air.start(edge.store(request), services(request).clock, edge.principal(request), machine_id,
                        triggered_by="Device")
    except AppError as e:
        return refused(request, who, e)
    return RedirectResponse(f"/investigations/{inv.record.id}", status_code=303)
