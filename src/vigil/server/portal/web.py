"""What every portal page shares: the templates (a shared layout and component macros), the page guard, the CSRF
check of forms, and the one refusal page."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from vigil.app.errors import AppError
from vigil.app.paging import PageRequest, words_of
from vigil.core.rbac import Permission
from vigil.server import app_edge as edge
from vigil.server.auth import CSRF_COOKIE, PERMISSION_ATTR, PUBLIC, SIGNED_IN, Principal, current_principal
from vigil.server.errors import APIError

HERE = Path(__file__).parent
# One folder per area (devices/, alerts/, ...) and layout/ with the base page and the component macros.
templates = Jinja2Templates(directory=str(HERE / "templates"))
STATIC_DIR = HERE / "static"
# Chart.js's browser build, installed from npm by `make install` (assets/package.json), served as /static/vendor/.
VENDOR_DIR = HERE / "assets" / "node_modules" / "chart.js" / "dist"


class PageForbidden(APIError):
    """A page the caller may not see: the error page names the permission it needs."""

    def __init__(self, permission: Permission) -> None:
        super().__init__(403, "forbidden", f"this page needs the permission '{permission}'")
        self.permission = permission


def page(permission: Permission) -> Any:
    """Like ``requires`` for pages: an anonymous visitor is sent to the sign-in page instead."""

    def check(request: Request) -> Principal:
        principal = current_principal(request)
        if principal is None:
            raise APIError(303, "login_required", "sign in first", headers={"Location": "/login"})
        if permission not in principal.permissions:
            raise PageForbidden(permission)
        request.state.principal = principal
        return principal

    setattr(check, PERMISSION_ATTR, permission)
    return Depends(check)


def any_page() -> Any:
    """Any signed-in user, whatever their permissions (a page of one's own, such as API tokens)."""

    def check(request: Request) -> Principal:
        principal = current_principal(request)
        if principal is None:
            raise APIError(303, "login_required", "sign in first", headers={"Location": "/login"})
        request.state.principal = principal
        return principal

    setattr(check, PERMISSION_ATTR, SIGNED_IN)
    return Depends(check)


def public_page() -> Any:
    def allow() -> None:
        return None

    setattr(allow, PERMISSION_ATTR, PUBLIC)
    return Depends(allow)


def secure(request: Request) -> bool:
    return request.url.scheme == "https"


def check_form_csrf(request: Request, sent: str) -> None:
    if not secrets.compare_digest(sent, request.cookies.get(CSRF_COOKIE, "")) or not sent:
        raise APIError(403, "csrf_failed", "the form is stale or forged; reload the page and try again")


# The portal's one error table: the same status as the API (app_edge.HTTP_ERRORS) and a page saying why.
PORTAL_TITLES: dict[str, str] = {
    "forbidden": "Not allowed", "not_found": "Not found", "ambiguous": "Ambiguous",
    "signoff_required": "Sign-off required", "invalid_request": "Not valid", "not_configured": "Not configured",
}


def refused(request: Request, who: Principal, e: AppError) -> Response:
    err = edge.http_error(e)
    return templates.TemplateResponse(request, "layout/refused.html", {
        "user": who.user, "title": PORTAL_TITLES.get(err.error, "Refused"), "error": err.error,
        "detail": err.detail, "field": err.field,
    }, status_code=err.status)


# The header's links, each with the permission its page needs (None: any signed-in user). The first the user may
# see is where they land after signing in, so a read-only or plan-only user never starts on a refusal.
NAV: tuple[tuple[str, str, Permission | None], ...] = (
    ("/", "Dashboard", Permission.VIEW_DATA_SECOPS),
    ("/devices", "Devices", Permission.VIEW_DATA_SECOPS),
    ("/incidents", "Incidents", Permission.VIEW_DATA_SECOPS),
    ("/alerts", "Alerts", Permission.VIEW_DATA_SECOPS),
    ("/hunting", "Hunting", Permission.VIEW_DATA_SECOPS),
    ("/investigations", "Investigations", Permission.VIEW_DATA_SECOPS),
    ("/experts", "Experts", Permission.VIEW_DATA_SECOPS),
    ("/actioncenter", "Action center", Permission.VIEW_DATA_SECOPS),
    ("/content", "Rule content", Permission.VIEW_DATA_SECOPS),
    ("/asr", "ASR", Permission.VIEW_DATA_SECOPS),
    ("/tvm", "Vulnerabilities", Permission.VIEW_DATA_TVM),
    ("/antivirus", "Antivirus", Permission.VIEW_DATA_SECOPS),
    ("/indicators", "Indicators", Permission.VIEW_DATA_SECOPS),
    ("/plan", "Plan", Permission.VIEW_PLAN_REPORTS),
    ("/audit", "Audit log", Permission.MANAGE_PORTAL_SETTINGS),
    ("/onboarding", "Onboarding", Permission.MANAGE_SECURITY_SETTINGS),
    ("/settings", "Settings", None),
)


def allowed_links(who: Principal | None) -> list[tuple[str, str]]:
    if who is None:
        return []
    # A user who holds no permission gets no links at all (not even Settings, whose pages would all refuse them):
    # they land on their own account page.
    if not who.permissions:
        return []
    return [(href, label) for href, label, perm in NAV if perm is None or perm in who.permissions]


def landing(who: Principal) -> str:
    """The first page this user may see; their own account page when they may see nothing else."""
    links = allowed_links(who)
    return links[0][0] if links else "/account"


def _nav(request: Request) -> list[tuple[str, str]]:
    try:
        return allowed_links(getattr(request.state, "principal", None) or current_principal(request))
    except Exception:  # the error page of a broken request still renders, without its links
        return []


def _may_search(request: Request) -> bool:
    """The header's search box, for those who may see what it finds (devices, alerts, incidents)."""
    try:
        who = getattr(request.state, "principal", None) or current_principal(request)
    except Exception:
        return False
    return who is not None and Permission.VIEW_DATA_SECOPS in who.permissions


templates.env.globals["nav_links"] = _nav
templates.env.globals["may_search"] = _may_search

_ERROR_TITLES = {400: "Bad request", 401: "Sign in first", 403: "Not allowed", 404: "Page not found",
                 405: "Not allowed here", 409: "Conflict", 422: "Not valid", 429: "Too many requests",
                 500: "Something went wrong", 503: "Unavailable"}


def wants_html(request: Request) -> bool:
    """A browser asking for a portal page: /api (and the agent and metrics routes) always answer JSON."""
    path = request.url.path
    if path.startswith(("/api/", "/agent", "/metrics", "/static/")) or path == "/api":
        return False
    return "text/html" in request.headers.get("accept", "")


def error_page(request: Request, status: int, error: str, detail: str, field: str | None = None,
               headers: dict[str, str] | None = None, permission: Permission | None = None) -> Response:
    """The portal's error page for people: what went wrong, the permission a page needs, and a way home."""
    if 300 <= status < 400 and headers and "Location" in headers:
        return RedirectResponse(headers["Location"], status_code=status)
    try:
        who = getattr(request.state, "principal", None) or current_principal(request)
    except Exception:
        who = None
    context = {
        "user": who.user if who else None, "status": status, "title": _ERROR_TITLES.get(status, "Error"),
        "error": error, "detail": detail[:1].upper() + detail[1:], "field": field,
        "permission": str(permission) if permission else None,
        "home": landing(who) if who else "/login",
        "held": sorted(str(p) for p in who.permissions) if who and permission else [],
    }
    resp = templates.TemplateResponse(request, "layout/error.html", context, status_code=status)
    assert isinstance(resp, HTMLResponse)
    for k, v in (headers or {}).items():
        if k.lower() != "www-authenticate":
            resp.headers[k] = v
    return resp


PAGE_SIZE = 50


@dataclass(frozen=True)
class Paging:
    """A list's page, sort and search, read from the query string; ``url`` builds the links (layout/macros.html)."""

    params: dict[str, str]
    page: int
    size: int
    sort: str
    desc: bool
    total: int

    @property
    def first(self) -> int:
        return (self.page - 1) * self.size + 1

    @property
    def last(self) -> int:
        return min(self.page * self.size, self.total)

    @property
    def has_next(self) -> bool:
        return self.page * self.size < self.total

    def url(self, **changes: Any) -> str:
        q = {**self.params, "page": str(self.page), "sort": self.sort, "desc": "1" if self.desc else "0"}
        q.update({k: ("1" if v is True else "0" if v is False else str(v)) for k, v in changes.items()})
        return "?" + urlencode({k: v for k, v in q.items() if v != ""})


def page_request(request: Request, default: str, default_desc: bool = True) -> PageRequest:
    """The list's page, sort and search words from the query string, for a list the store pages; the service
    checks the sort key against its list's (a 422 naming ``sort``)."""
    qp = request.query_params
    try:
        page_no = int(qp.get("page", "1"))
    except ValueError:
        raise APIError(422, "invalid_request", "page must be a whole number", field="page") from None
    if page_no < 1:
        raise APIError(422, "invalid_request", "page: a whole number from 1", field="page")
    return PageRequest(sort=qp.get("sort", default), desc=qp.get("desc", "1" if default_desc else "0") == "1",
                       page=page_no, size=PAGE_SIZE, words=words_of(qp.get("q", "")))


def paging_of(request: Request, req: PageRequest, total: int) -> Paging:
    """The pager and sort links of a page the store returned (layout/macros.html)."""
    params = {k: v for k, v in request.query_params.items() if k not in ("page", "sort", "desc")}
    return Paging(params, req.page, req.size, req.sort, req.desc, total)


Row = TypeVar("Row")


def paginate(request: Request, rows: list[Row], sorts: dict[str, Callable[[Row], Any]],
             default: str, search: Callable[[Row], str], default_desc: bool = True,
             ) -> tuple[Paging, list[Row]]:
    """Search (``q``: every word, anywhere in the row's text), sort (``sort``, ``desc``) and page (``page``)."""
    qp = request.query_params
    sort = qp.get("sort", default)
    if sort not in sorts:
        raise APIError(422, "invalid_request", f"sort {sort!r}: use one of {', '.join(sorts)}", field="sort")
    try:
        page_no = max(1, int(qp.get("page", "1")))
    except ValueError:
        raise APIError(422, "invalid_request", "page must be a whole number", field="page") from None
    desc = qp.get("desc", "1" if default_desc else "0") == "1"
    words = qp.get("q", "").lower().split()
    if words:
        rows = [r for r in rows if all(w in search(r).lower() for w in words)]
    key = sorts[sort]
    rows = sorted(rows, key=lambda r: (key(r) is None, key(r) if key(r) is not None else ""), reverse=desc)
    params = {k: v for k, v in qp.items() if k not in ("page", "sort", "desc")}
    pg = Paging(params, page_no, PAGE_SIZE, sort, desc, len(rows))
    return pg, rows[(page_no - 1) * PAGE_SIZE: page_no * PAGE_SIZE]
