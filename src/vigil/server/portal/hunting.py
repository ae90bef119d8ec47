"""Portal page for advanced hunting: the query editor with the schema browser (from the one telemetry
declaration), the results grid with paging, and the CSV export of the same query. Runs through the hunting service
(permission, device-group scope, quotas, audit), as the API does."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from vigil.app import hunting
from vigil.app.errors import AppError
from vigil.app.stores import hunt_runner
from vigil.core.rbac import Permission
from vigil.core.tvm_schema import HUNTING_TABLES
from vigil.server import app_edge as edge
from vigil.server.auth import Principal, services
from vigil.server.portal.web import page, templates

router = APIRouter(include_in_schema=False)
PAGE_ROWS = 50
EXAMPLE = "DeviceProcessEvents\n| where Timestamp > ago(1d)\n| summarize count() by FileName\n| top 20 by count_"


def _text(v: Any) -> str:
    if v is None:
        return ""
    return json.dumps(v, separators=(",", ":")) if isinstance(v, dict | list) else str(v)


def _run(request: Request, query: str) -> hunting.HuntResult:
    store = edge.store(request)
    return hunting.run_query(store, hunt_runner(store), services(request).clock, edge.principal(request), query)


@router.get("/hunting", response_class=HTMLResponse)
def hunting_page(request: Request, query: str = "", p: int = 1,
                 who: Principal = page(Permission.VIEW_DATA_SECOPS)) -> Response:
    """``?query=`` runs the query (a link can open it prefilled); ``p`` pages the results."""
    result, error = None, None
    if query.strip():
        try:
            result = _run(request, query)
        except AppError as e:
            error = e.message
    rows = result.results if result else []
    pages = max(1, -(-len(rows) // PAGE_ROWS))
    p = min(max(1, p), pages)
    schema = [(t.name, [(c.name, c.type.value) for c in t.columns]) for t in HUNTING_TABLES.values()]
    return templates.TemplateResponse(request, "hunting/hunt.html", {
        "user": who.user, "query": query or EXAMPLE, "ran": bool(query.strip()), "error": error, "result": result,
        "names": [c["Name"] for c in result.schema] if result else [],
        "rows": [{k: _text(v) for k, v in r.items()} for r in rows[(p - 1) * PAGE_ROWS:p * PAGE_ROWS]],
        "total": len(rows), "page": p, "pages": pages, "schema": schema,
    }, status_code=422 if error else 200)


@router.get("/hunting/results.csv")
def hunting_csv(request: Request, query: str, who: Principal = page(Permission.VIEW_DATA_SECOPS)) -> Response:
    """The whole result of ``query`` (up to the row quota) as CSV, run again (and audited again)."""
    try:
        result = _run(request, query)
    except AppError as e:
        return Response(e.message + "\n", status_code=422, media_type="text/plain; charset=utf-8")
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    names = [c["Name"] for c in result.schema]
    w.writerow(names)
    for r in result.results:
        w.writerow([_text(r.get(n)) for n in names])
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="hunting-results.csv"'})
