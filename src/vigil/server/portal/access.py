"""Portal pages for who may do what: the settings hub, users, roles and user groups, and one's API tokens."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from vigil.app import tokens as app_tokens
from vigil.app import users as app_users
from vigil.app.errors import AppError
from vigil.core.rbac import BasicRole, Permission
from vigil.server import app_edge as edge
from vigil.server.api import accounts as api_accounts
from vigil.server.api import rbac as api_rbac
from vigil.server.api import tokens as api_tokens
from vigil.server.auth import CSRF_COOKIE, Principal, services
from vigil.server.errors import APIError
from vigil.server.portal.web import any_page, check_form_csrf, page, refused, templates

router = APIRouter(include_in_schema=False)

# The hub's pages, each with the permission it needs to open (None: any signed-in user).
SETTINGS: tuple[tuple[str, str, str, Permission | None], ...] = (
    ("/suppression", "Suppression rules", "Hide or resolve known-good alerts", Permission.VIEW_DATA_SECOPS),
    ("/machinegroups", "Device groups", "Matching rules, preview, ranks and access", Permission.VIEW_DATA_SECOPS),
    # Open to everyone: a user without Manage portal system settings sees their own access there, read-only.
    ("/users", "Users, roles and user groups", "Accounts and what they may do", None),
    ("/tokens", "API tokens", "Your own tokens for scripts", None),
    ("/onboarding", "Onboarding", "Packages that enroll devices", Permission.MANAGE_SECURITY_SETTINGS),
    ("/audit", "Audit log", "Every change, hash-chained", Permission.MANAGE_PORTAL_SETTINGS),
)


@router.get("/settings", response_class=HTMLResponse)
def settings_hub(request: Request, who: Principal = any_page()) -> Response:
    links = [(href, label, text) for href, label, text, perm in SETTINGS if perm is None or perm in who.permissions]
    return templates.TemplateResponse(request, "access/settings.html", {"user": who.user, "links": links})


def _csrf(request: Request) -> str:
    return request.cookies.get(CSRF_COOKIE, "")


def _invalid(e: ValidationError) -> APIError:
    err = e.errors()[0]
    field = str(err["loc"][0]) if err["loc"] else None
    return APIError(422, "invalid_request", f"{field}: {err['msg']}" if field else str(err["msg"]), field=field)


def _back(to: str) -> Response:
    return RedirectResponse(to, status_code=303)


@router.get("/users", response_class=HTMLResponse)
def users_page(request: Request, who: Principal = any_page()) -> Response:
    """Users, roles and user groups on one page: who may sign in, and what each group's roles let them do.

    Without the permission to manage them, the caller's own access, read-only, rather than a refusal."""
    if Permission.MANAGE_PORTAL_SETTINGS not in who.permissions:
        return templates.TemplateResponse(request, "access/own_access.html", {
            "user": who.user, "access": api_rbac.own_access(request, who),
            "needs": Permission.MANAGE_PORTAL_SETTINGS.value,
        })
    overview = api_rbac.rbac_overview(request, who)
    return templates.TemplateResponse(request, "access/users.html", {
        "user": who.user, "users": api_rbac.users(request, who)["value"], "mode": overview["mode"],
        "roles": overview["roles"], "user_groups": overview["userGroups"], "csrf": _csrf(request),
        "basic_roles": [r.value for r in BasicRole], "permissions": [p.value for p in Permission],
    })


@router.post("/users")
def users_add(
    request: Request, csrf: Annotated[str, Form()], username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "", role: Annotated[str, Form()] = "read-only",
    email: Annotated[str, Form()] = "", who: Principal = page(Permission.MANAGE_PORTAL_SETTINGS),
) -> Response:
    check_form_csrf(request, csrf)
    try:
        body = api_rbac.NewUser(username=username.strip(), password=password, role=role,  # type: ignore[arg-type]
                                email=email.strip() or None)
    except ValidationError as e:
        raise _invalid(e) from None
    api_rbac.add_user(body, request, who)
    return _back("/users")


@router.post("/users/{username}/{what}")
def users_change(
    username: str, what: str, request: Request, csrf: Annotated[str, Form()],
    password: Annotated[str, Form()] = "", role: Annotated[str, Form()] = "", group: Annotated[str, Form()] = "",
    who: Principal = page(Permission.MANAGE_PORTAL_SETTINGS),
) -> Response:
    """Disable or enable, change the basic role, reset the password, join or leave a user group."""
    check_form_csrf(request, csrf)
    try:
        if what in ("disable", "enable"):
            # The service: the same verb as `vigil users disable|enable`, with its "not yourself" check.
            app_users.set_disabled(edge.store(request), services(request).clock, edge.principal(request), username,
                                   what == "disable")
        elif what == "role":
            api_rbac.patch_user(username, api_rbac.UserPatch(role=role), request, who)  # type: ignore[arg-type]
        elif what == "password":
            api_accounts.reset_password(username, api_accounts.PasswordReset(password=password), request, who)
        elif what == "join":
            api_rbac.add_member(group.strip(), username, request, None, who)
        elif what == "leave":
            api_rbac.remove_member(group, username, request, who)
        else:
            raise APIError(404, "not_found", f"no change {what!r}: use disable, enable, role, password, join or leave")
    except ValidationError as e:
        raise _invalid(e) from None
    except AppError as e:
        return refused(request, who, e)
    return _back("/users")


@router.post("/roles")
def roles_put(
    request: Request, csrf: Annotated[str, Form()], name: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "", permissions: Annotated[list[str] | None, Form()] = None,
    user_groups: Annotated[str, Form()] = "", who: Principal = page(Permission.MANAGE_PORTAL_SETTINGS),
) -> Response:
    check_form_csrf(request, csrf)
    if not name.strip():
        raise APIError(422, "invalid_request", "name: a role needs a name", field="name")
    try:
        body = api_rbac.RoleBody(description=description.strip(), permissions=permissions or [],
                                 userGroups=[g.strip() for g in user_groups.split(",") if g.strip()])
    except ValidationError as e:
        raise _invalid(e) from None
    api_rbac.put_role(name.strip(), body, request, who)
    return _back("/users")


@router.post("/roles/delete")
def roles_delete(
    request: Request, csrf: Annotated[str, Form()], name: Annotated[str, Form()],
    who: Principal = page(Permission.MANAGE_PORTAL_SETTINGS),
) -> Response:
    check_form_csrf(request, csrf)
    api_rbac.delete_role(name, request, who)
    return _back("/users")


@router.post("/rbac/mode")
def rbac_mode(
    request: Request, csrf: Annotated[str, Form()], confirm: Annotated[str, Form()] = "",
    who: Principal = page(Permission.MANAGE_PORTAL_SETTINGS),
) -> Response:
    """Basic to RBAC mode; it cannot be undone, so the form asks for the word."""
    check_form_csrf(request, csrf)
    if confirm.strip().lower() != "rbac":
        raise APIError(422, "invalid_request", "confirm: type RBAC to switch; it cannot be undone", field="confirm")
    api_rbac.set_mode(api_rbac.ModeBody(mode="rbac"), request, who)
    return _back("/users")


@router.get("/tokens", response_class=HTMLResponse)
def tokens_page(request: Request, who: Principal = any_page()) -> Response:
    return _tokens(request, who, None)


def _tokens(request: Request, who: Principal, made: dict[str, Any] | None) -> Response:
    resp = templates.TemplateResponse(request, "access/tokens.html", {
        "user": who.user, "csrf": _csrf(request), "made": made, "max_days": app_tokens.MAX_LIFETIME_DAYS,
        "tokens": [api_tokens.token_info(t).model_dump()
                   for t in app_tokens.mine(edge.store(request), edge.principal(request))],
        "scopes": sorted(p.value for p in who.permissions),
    })
    resp.headers["Cache-Control"] = "no-store"  # the page that shows a new secret must not be kept
    return resp


@router.post("/tokens", response_class=HTMLResponse)
def tokens_create(
    request: Request, csrf: Annotated[str, Form()], name: Annotated[str, Form()] = "",
    scopes: Annotated[list[str] | None, Form()] = None, expires_in_days: Annotated[str, Form()] = "30",
    who: Principal = any_page(),
) -> Response:
    """The new token's secret is shown on this one response and never again (the store keeps only its hash)."""
    check_form_csrf(request, csrf)
    if not expires_in_days.strip().isdigit():
        raise APIError(422, "invalid_request", "expiresInDays: a whole number of days", field="expiresInDays")
    try:
        body = api_tokens.TokenBody(name=name.strip(), scopes=scopes or [], expiresInDays=int(expires_in_days))
    except ValidationError as e:
        raise _invalid(e) from None
    try:
        token, secret = app_tokens.create(edge.store(request), services(request).clock, edge.principal(request),
                                          name=body.name, scopes=body.scopes, days=body.expiresInDays)
    except AppError as e:
        return refused(request, who, e)
    return _tokens(request, who, {**api_tokens.token_info(token).model_dump(), "token": secret})


@router.post("/tokens/{token_id}/revoke")
def tokens_revoke(
    token_id: int, request: Request, csrf: Annotated[str, Form()], who: Principal = any_page(),
) -> Response:
    check_form_csrf(request, csrf)
    try:
        app_tokens.revoke(edge.store(request), services(request).clock, edge.principal(request), token_id)
    except AppError as e:
        return refused(request, who, e)
    return _back("/tokens")
