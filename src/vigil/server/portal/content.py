"""Portal page for the rule content store: which imported rules run, store-wide or per device group, switched by
rule or by folder, and their levels; a change is audited and the live rule sets are rebuilt behind it."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from vigil.app.ports import AuditRecord
from vigil.content.store import ContentError, ContentStore, content_root
from vigil.core.rbac import Permission
from vigil.server import app_edge as edge
from vigil.server.auth import CSRF_COOKIE, Principal, client_ip
from vigil.server.detection import LiveDetection, load_ruleset
from vigil.server.portal.web import check_form_csrf, page, templates

router = APIRouter(include_in_schema=False)
log = logging.getLogger("vigil.detect")
_reload_lock = threading.Lock()


def _store(request: Request) -> ContentStore:
    return ContentStore(content_root(request.app.state.services.settings.data_dir))


def _back(group: str, message: str | None = None, error: str | None = None) -> Response:
    query = {k: v for k, v in (("group", group), ("message", message), ("error", error)) if v}
    return RedirectResponse(f"/content{'?' + urlencode(query) if query else ''}", status_code=303)


@router.get("/content", response_class=HTMLResponse)
def content_page(
    request: Request, group: str = "", message: str | None = None, error: str | None = None,
    who: Principal = page(Permission.VIEW_DATA_SECOPS),
) -> Response:
    store = _store(request)
    try:
        entries, errors, groups = store.entries(group or None), store.load_errors(), store.groups()
    except ContentError as e:
        entries, errors, groups, error = [], [], [], str(e)
    folders: dict[str, list[int]] = {}
    for entry in entries:
        counts = folders.setdefault(entry.folder, [0, 0])
        counts[0 if entry.enabled else 1] += 1
    return templates.TemplateResponse(request, "content/content.html", {
        "user": who.user, "entries": entries, "errors": errors, "groups": groups, "group": group,
        "folders": sorted(folders.items()), "packs": store.packs() if not error else {}, "message": message,
        "error": error, "csrf": request.cookies.get(CSRF_COOKIE, ""),
        "can_edit": Permission.MANAGE_SECURITY_SETTINGS in who.permissions,
    })


@router.post("/content/switch")
def content_switch(
    request: Request, target: str = Form(...), state: str = Form(...), group: str = Form(""), csrf: str = Form(""),
    who: Principal = page(Permission.MANAGE_SECURITY_SETTINGS),
) -> Response:
    check_form_csrf(request, csrf)
    if state not in ("on", "off"):
        return _back(group, error=f"state {state!r}: use on or off")
    try:
        [taken] = _store(request).set_enabled([target], state == "on", group or None)
    except ContentError as e:
        return _back(group, error=str(e))
    _audit(request, who, "content.switch", target, {"enabled": state == "on", "group": group or None})
    _rebuild(request)
    where = f" for device group {group}" if group else ""
    return _back(group, f"Switched {taken} {state}{where}; the live rules are being rebuilt.")


@router.post("/content/level")
def content_level(
    request: Request, rule_id: str = Form(...), level: str = Form(...), group: str = Form(""), csrf: str = Form(""),
    who: Principal = page(Permission.MANAGE_SECURITY_SETTINGS),
) -> Response:
    check_form_csrf(request, csrf)
    try:
        _store(request).set_level(rule_id, level, group or None)
    except ContentError as e:
        return _back(group, error=str(e))
    _audit(request, who, "content.set_level", rule_id, {"level": level.lower(), "group": group or None})
    _rebuild(request)
    return _back(group, f"Rule {rule_id} now runs at level {level.lower()}; the live rules are being rebuilt.")


def _audit(request: Request, who: Principal, action: str, target: str, after: dict[str, object]) -> None:
    with edge.store(request).begin() as uow:
        uow.audit.append(AuditRecord(who.user.username, action, "rule_content", target, after=after,
                                     source_ip=client_ip(request)), request.app.state.services.clock.now())


def _rebuild(request: Request) -> None:
    """Compile the store-wide and per-group rule sets again in the background, then swap them in at once."""
    svc = request.app.state.services
    detector = svc.ingest.detector
    if not isinstance(detector, LiveDetection):
        return
    settings = svc.settings
    placeholders = Path(settings.rule_placeholders) if settings.rule_placeholders else None

    def rebuild() -> None:
        with _reload_lock:  # one rebuild at a time; each reads the store as it is when it starts
            try:
                store = ContentStore(content_root(settings.data_dir))
                by_group = {g: load_ruleset(settings.rule_paths, placeholders, store, g) for g in store.groups()}
                detector.replace(load_ruleset(settings.rule_paths, placeholders, store), by_group)
            except Exception:  # the rules running now keep running
                log.exception("rule content: live rule sets not rebuilt")

    threading.Thread(target=rebuild, name="vigil-content-rebuild", daemon=True).start()
