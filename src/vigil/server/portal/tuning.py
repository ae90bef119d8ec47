"""Portal pages for tuning detection's reach: alert suppression rules and device groups (matching rules, preview)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from vigil.app import suppression as app_suppression
from vigil.app.errors import AppError
from vigil.core.groups import AutomationLevel, DeviceFacts, GroupRule, GroupRuleError, RuleOperator, RuleProperty
from vigil.core.groups import parse_conditions as parse_group_conditions
from vigil.core.rbac import Permission
from vigil.core.suppression import ConditionField, SuppressionAction, SuppressionScope
from vigil.server import app_edge as edge
from vigil.server.api import machinegroups as api_groups
from vigil.server.api.machines import Machine, list_machines
from vigil.server.api.suppression import rule_info
from vigil.server.auth import CSRF_COOKIE, Principal, services
from vigil.server.errors import APIError
from vigil.server.portal.web import check_form_csrf, page, refused, templates

router = APIRouter(include_in_schema=False)
# A device group's form offers this many condition rows (all must hold); more can be set through the API.
CONDITION_ROWS = 4


def _csrf(request: Request) -> str:
    return request.cookies.get(CSRF_COOKIE, "")


@router.get("/suppression", response_class=HTMLResponse)
def suppression_page(request: Request, who: Principal = page(Permission.VIEW_DATA_SECOPS)) -> Response:
    try:
        rules = [rule_info(r) for r in app_suppression.list_rules(edge.store(request), edge.principal(request))]
    except AppError as e:
        return refused(request, who, e)
    return templates.TemplateResponse(request, "tuning/suppression.html", {
        "user": who.user, "rules": rules, "csrf": _csrf(request),
        "can_edit": Permission.MANAGE_SECURITY_SETTINGS in who.permissions,
        "scopes": list(SuppressionScope), "actions": list(SuppressionAction), "fields": list(ConditionField),
        "machines": list_machines(request), "title": request.query_params.get("alertTitle", ""),
    })


@router.post("/suppression")
def suppression_create(
    request: Request, csrf: Annotated[str, Form()], alert_title: Annotated[str, Form()] = "",
    scope: Annotated[str, Form()] = "Organization", action: Annotated[str, Form()] = "Hide",
    machine_id: Annotated[str, Form()] = "", comment: Annotated[str, Form()] = "",
    condition_field: Annotated[list[str] | None, Form()] = None,
    condition_value: Annotated[list[str] | None, Form()] = None,
    who: Principal = page(Permission.MANAGE_SECURITY_SETTINGS),
) -> Response:
    check_form_csrf(request, csrf)
    conditions: dict[str, str] = {}
    for name, value in zip(condition_field or [], condition_value or [], strict=False):
        if name and value.strip():
            if name in conditions:
                raise APIError(422, "invalid_request", f"conditions.{name}: given twice", field=f"conditions.{name}")
            conditions[name] = value.strip()
    try:
        app_suppression.create_rule(
            edge.store(request), services(request).clock, edge.principal(request), alert_title=alert_title.strip(),
            scope=scope, action=action, conditions=conditions, machine_id=machine_id or None, comment=comment)
    except AppError as e:
        return refused(request, who, e)
    return RedirectResponse("/suppression", status_code=303)


@router.post("/suppression/{rule_id}/{what}")
def suppression_change(
    rule_id: int, what: str, request: Request, csrf: Annotated[str, Form()],
    who: Principal = page(Permission.MANAGE_SECURITY_SETTINGS),
) -> Response:
    check_form_csrf(request, csrf)
    store, clock, caller = edge.store(request), services(request).clock, edge.principal(request)
    try:
        if what in ("enable", "disable"):
            app_suppression.set_enabled(store, clock, caller, rule_id, what == "enable")
        elif what == "delete":
            app_suppression.delete_rule(store, clock, caller, rule_id)
        else:
            raise APIError(404, "not_found", f"no change {what!r}: use enable, disable or delete")
    except AppError as e:
        return refused(request, who, e)
    return RedirectResponse("/suppression", status_code=303)


def _conditions(props: list[str], ops: list[str], values: list[str]) -> list[dict[str, str]]:
    return [{"property": p, "operator": o, "value": v.strip()}
            for p, o, v in zip(props, ops, values, strict=False) if v.strip()]


def _preview(request: Request, rules: list[dict[str, Any]]) -> list[Machine]:
    """The visible devices these conditions match (before ranks: a higher-ranked group may still claim one)."""
    conds = parse_group_conditions(rules)
    probe = GroupRule(0, 0, conds)
    return [m for m in list_machines(request)
            if probe.matches(DeviceFacts(m.computerDnsName, m.osPlatform or "", tuple(m.machineTags)))]


def _groups_page(request: Request, who: Principal, name: str, draft: list[dict[str, str]] | None) -> Response:
    groups = api_groups.machine_groups(request, who)["value"]
    current = next((g for g in groups if g["name"] == name), None)
    preview, preview_error = None, None
    if draft is not None:
        try:
            preview = _preview(request, draft)
        except GroupRuleError as e:
            preview_error = str(e)
    rows = draft if draft is not None else (current["rules"] if current else [])
    return templates.TemplateResponse(request, "tuning/machinegroups.html", {
        "user": who.user, "groups": groups, "current": current, "csrf": _csrf(request),
        "can_edit": Permission.MANAGE_PORTAL_SETTINGS in who.permissions,
        "rows": rows + [{}] * max(0, CONDITION_ROWS - len(rows)), "properties": list(RuleProperty),
        "operators": list(RuleOperator), "levels": list(AutomationLevel), "preview": preview,
        "preview_error": preview_error, "name": name,
    })


@router.get("/machinegroups", response_class=HTMLResponse)
def groups_page(request: Request, group: str = "", who: Principal = page(Permission.VIEW_DATA_SECOPS)) -> Response:
    return _groups_page(request, who, group, None)


@router.post("/machinegroups/preview", response_class=HTMLResponse)
def groups_preview(
    request: Request, csrf: Annotated[str, Form()], name: Annotated[str, Form()] = "",
    property: Annotated[list[str] | None, Form()] = None, operator: Annotated[list[str] | None, Form()] = None,
    value: Annotated[list[str] | None, Form()] = None, who: Principal = page(Permission.VIEW_DATA_SECOPS),
) -> Response:
    """Which devices a draft rule would take, before anything is saved; a POST so the CSRF token stays out of URLs."""
    check_form_csrf(request, csrf)
    return _groups_page(request, who, name.strip(), _conditions(property or [], operator or [], value or []))


@router.post("/machinegroups")
def groups_put(
    request: Request, csrf: Annotated[str, Form()], name: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "", automation_level: Annotated[str, Form()] = "",
    user_groups: Annotated[str, Form()] = "", property: Annotated[list[str] | None, Form()] = None,
    operator: Annotated[list[str] | None, Form()] = None, value: Annotated[list[str] | None, Form()] = None,
    who: Principal = page(Permission.MANAGE_PORTAL_SETTINGS),
) -> Response:
    check_form_csrf(request, csrf)
    name = name.strip()
    if not name:
        raise APIError(422, "invalid_request", "name: a device group needs a name", field="name")
    try:
        body = api_groups.GroupBody(
            description=description.strip() or None, automationLevel=automation_level or None,  # type: ignore[arg-type]
            rules=_conditions(property or [], operator or [], value or []),
            userGroups=[g.strip() for g in user_groups.split(",") if g.strip()],
        )
    except ValidationError as e:
        err = e.errors()[0]
        raise APIError(422, "invalid_request", f"{err['loc'][0]}: {err['msg']}", field=str(err["loc"][0])) from None
    api_groups.put_group(name, body, request, who)
    return RedirectResponse("/machinegroups?" + urlencode({"group": name}), status_code=303)


@router.post("/machinegroups/delete")
def groups_delete(
    request: Request, csrf: Annotated[str, Form()], name: Annotated[str, Form()],
    who: Principal = page(Permission.MANAGE_PORTAL_SETTINGS),
) -> Response:
    check_form_csrf(request, csrf)
    api_groups.delete_group(name, request, who)
    return RedirectResponse("/machinegroups", status_code=303)
