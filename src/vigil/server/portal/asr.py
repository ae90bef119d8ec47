"""Portal pages for attack surface reduction and indicators: rules with each group's mode and a mode switch, the
what-if replay behind each switch, the ASR report (events by rule and day), and indicators (list, create, CSV import,
delete)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from vigil.app import asr as asr_service
from vigil.app import indicators as app_indicators
from vigil.app.errors import AppError, InvalidInput
from vigil.app.stores import hunt_runner
from vigil.asr import AsrMode, catalogue
from vigil.asr.indicators import SEVERITIES, IndicatorAction, IndicatorType
from vigil.core.rbac import Permission
from vigil.server import app_edge as edge
from vigil.server.api.indicators import indicator_info
from vigil.server.auth import CSRF_COOKIE, Principal, services
from vigil.server.portal.web import check_form_csrf, page, refused, templates

router = APIRouter(include_in_schema=False)
MODES = (AsrMode.OFF, AsrMode.AUDIT, AsrMode.WARN, AsrMode.BLOCK)


def _csrf(request: Request) -> str:
    return request.cookies.get(CSRF_COOKIE, "")


@router.get("/asr", response_class=HTMLResponse)
def asr_page(request: Request, group: str = "default", who: Principal = page(Permission.VIEW_DATA_SECOPS)
             ) -> Response:
    store, clock, caller = edge.store(request), services(request).clock, edge.principal(request)
    try:
        views = asr_service.policies(store, clock, caller)
        current = asr_service.policy(store, clock, caller, group)
        report = asr_service.report(store, hunt_runner(store), clock, caller, 30)
    except AppError as e:
        return refused(request, who, e)
    groups = ["default", *asr_service.group_names(store, caller)]
    stored = {v.group_name: v.record.version if v.record else 0 for v in views}
    peak = max((n for day in report.values() for n in day.values()), default=0)
    return templates.TemplateResponse(request, "asr/rules.html", {
        "user": who.user, "csrf": _csrf(request), "rules": catalogue(), "policy": current, "group": group,
        "groups": groups, "stored": stored, "modes": MODES, "report": report, "peak": peak,
        "can_edit": Permission.MANAGE_SECURITY_SETTINGS in who.permissions,
    })


@router.post("/asr/mode")
def asr_mode(
    request: Request, csrf: Annotated[str, Form()], rule: Annotated[str, Form()], mode: Annotated[str, Form()],
    group: Annotated[str, Form()] = "default", who: Principal = page(Permission.MANAGE_SECURITY_SETTINGS),
) -> Response:
    check_form_csrf(request, csrf)
    try:
        try:
            parsed = AsrMode.parse(mode)
        except ValueError as e:
            raise InvalidInput(str(e), field="mode") from None
        asr_service.set_mode(edge.store(request), services(request).clock, edge.principal(request), group, rule,
                             parsed)
    except AppError as e:
        return refused(request, who, e)
    return RedirectResponse(f"/asr?group={group}", status_code=303)


@router.get("/asr/{rule_id}/whatif", response_class=HTMLResponse)
def whatif_page(rule_id: str, request: Request, days: int = 7, group: str = "default",
                who: Principal = page(Permission.VIEW_DATA_SECOPS)) -> Response:
    store = edge.store(request)
    try:
        result = asr_service.whatif(store, hunt_runner(store), services(request).clock, edge.principal(request),
                                    rule_id, days)
    except AppError as e:
        return refused(request, who, e)
    return templates.TemplateResponse(request, "asr/whatif.html", {
        "user": who.user, "csrf": _csrf(request), "result": result, "group": group,
        "can_edit": Permission.MANAGE_SECURITY_SETTINGS in who.permissions,
    })


@router.get("/indicators", response_class=HTMLResponse)
def indicators_page(request: Request, who: Principal = page(Permission.VIEW_DATA_SECOPS)) -> Response:
    try:
        items = app_indicators.list_indicators(edge.store(request), edge.principal(request))
    except AppError as e:
        return refused(request, who, e)
    return templates.TemplateResponse(request, "asr/indicators.html", {
        "user": who.user, "csrf": _csrf(request), "indicators": [indicator_info(i) for i in items],
        "types": list(IndicatorType), "actions": list(IndicatorAction), "severities": SEVERITIES,
        "groups": asr_service.group_names(edge.store(request), edge.principal(request)), "results": None,
        "can_edit": Permission.MANAGE_SECURITY_SETTINGS in who.permissions,
    })


@router.post("/indicators")
def indicators_create(
    request: Request, csrf: Annotated[str, Form()], indicator_value: Annotated[str, Form()] = "",
    indicator_type: Annotated[str, Form()] = "", action: Annotated[str, Form()] = "",
    title: Annotated[str, Form()] = "", severity: Annotated[str, Form()] = "Informational",
    description: Annotated[str, Form()] = "", expiration_time: Annotated[str, Form()] = "",
    groups: Annotated[list[str] | None, Form()] = None, generate_alert: Annotated[str, Form()] = "",
    who: Principal = page(Permission.MANAGE_SECURITY_SETTINGS),
) -> Response:
    check_form_csrf(request, csrf)
    body: dict[str, object] = {"indicatorValue": indicator_value, "indicatorType": indicator_type, "action": action,
                               "title": title, "severity": severity, "description": description,
                               "expirationTime": expiration_time or None, "generateAlert": bool(generate_alert)}
    if groups:
        body["rbacGroupNames"] = [g for g in groups if g]
    try:
        app_indicators.submit(edge.store(request), services(request).clock, edge.principal(request), body)
    except AppError as e:
        return refused(request, who, e)
    return RedirectResponse("/indicators", status_code=303)


@router.post("/indicators/import", response_class=HTMLResponse)
async def indicators_import(request: Request, csrf: Annotated[str, Form()], file: UploadFile,
                            who: Principal = page(Permission.MANAGE_SECURITY_SETTINGS)) -> Response:
    check_form_csrf(request, csrf)
    text = (await file.read()).decode("utf-8-sig", errors="replace")
    try:
        results = app_indicators.import_csv(edge.store(request), services(request).clock, edge.principal(request),
                                            text)
        items = app_indicators.list_indicators(edge.store(request), edge.principal(request))
    except AppError as e:
        return refused(request, who, e)
    return templates.TemplateResponse(request, "asr/indicators.html", {
        "user": who.user, "csrf": _csrf(request), "indicators": [indicator_info(i) for i in items],
        "types": list(IndicatorType), "actions": list(IndicatorAction), "severities": SEVERITIES,
        "groups": asr_service.group_names(edge.store(request), edge.principal(request)), "results": results,
        "can_edit": True,
    })


@router.post("/indicators/{indicator_id}/delete")
def indicators_delete(indicator_id: int, request: Request, csrf: Annotated[str, Form()],
                      who: Principal = page(Permission.MANAGE_SECURITY_SETTINGS)) -> Response:
    check_form_csrf(request, csrf)
    try:
        app_indicators.delete(edge.store(request), services(request).clock, edge.principal(request), indicator_id)
    except AppError as e:
        return refused(request, who, e)
    return RedirectResponse("/indicators", status_code=303)
