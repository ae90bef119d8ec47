"""Portal pages for who may do what: the settings hub, users, roles and user groups, and one's API tokens."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from vigil.core.rbac import Permission
from vigil.server.auth import Principal
from vigil.server.portal.web import any_page, templates

router = APIRouter(include_in_schema=False)

# The hub's pages, each with the permission it needs to open (None: any signed-in user).
SETTINGS: tuple[tuple[str, str, str, Permission | None], ...] = (
    ("/suppression", "Suppression rules", "Hide or resolve known-good alerts", Permission.VIEW_DATA_SECOPS),
    ("/machinegroups", "Device groups", "Matching rules, preview, ranks and access", Permission.VIEW_DATA_SECOPS),
    ("/users", "Users, roles and user groups", "Accounts and what they may do", Permission.MANAGE_PORTAL_SETTINGS),
    ("/tokens", "API tokens", "Your own tokens for scripts", None),
    ("/onboarding", "Onboarding", "Packages that enroll devices", Permission.MANAGE_SECURITY_SETTINGS),
    ("/audit", "Audit log", "Every change, hash-chained", Permission.MANAGE_PORTAL_SETTINGS),
)


@router.get("/settings", response_class=HTMLResponse)
def settings_hub(request: Request, who: Principal = any_page()) -> Response:
    links = [(href, label, text) for href, label, text, perm in SETTINGS if perm is None or perm in who.permissions]
    return templates.TemplateResponse(request, "access/settings.html", {"user": who.user, "links": links})
