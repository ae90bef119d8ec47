"""Portal pages for threat and vulnerability management: the dashboard (exposure score and its trend, top
recommendations, top vulnerable software, KEV exposure), the software inventory with each package's devices, the
weaknesses with why each matched, recommendations with the remediation-request and exception forms, and a device's
software and weaknesses. Everything comes from the TVM service, in the caller's device groups."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from vigil.app.errors import AppError, InvalidInput
from vigil.core.rbac import Permission
from vigil.server import app_edge as edge
from vigil.server.api.tvm import service
from vigil.server.auth import CSRF_COOKIE, Principal
from vigil.server.portal.web import check_form_csrf, page, refused, templates

router = APIRouter(include_in_schema=False)
VIEW = Permission.VIEW_DATA_TVM


def _ctx(request: Request, who: Principal, **extra: Any) -> dict[str, Any]:
    return {"user": who.user, "csrf": request.cookies.get(CSRF_COOKIE, ""), **extra}


@router.get("/tvm", response_class=HTMLResponse)
def dashboard(request: Request, who: Principal = page(VIEW)) -> Response:
    tvm, caller = service(request), edge.principal(request)
    try:
        score = tvm.exposure_score(caller)
        history = tvm.exposure_history(caller, 30)
        recs = tvm.recommendations(caller)[:10]
        software = [s for s in tvm.software(caller) if s["weaknesses"]][:10]
        vulns = tvm.vulnerabilities(caller)
        feeds = tvm.feed_status(caller)
        config_score = tvm.configuration.configuration_score(caller)
    except AppError as e:
        return refused(request, who, e)
    kev = [v for v in vulns if v["publicExploit"]]
    # A JSON data island: Markup, or autoescaping turns its quotes into &#34; and the chart's JSON.parse fails.
    island = Markup(json.dumps({"history": history}).replace("</", "<\\/"))  # noqa: S704 - JSON, "</" escaped
    return templates.TemplateResponse(request, "tvm/dashboard.html", _ctx(
        request, who, score=score, recs=recs, software=software, kev=kev, weaknesses=len(vulns), feeds=feeds,
        config_score=config_score, island=island))


@router.get("/tvm/software", response_class=HTMLResponse)
def software_page(request: Request, q: str = "", who: Principal = page(VIEW)) -> Response:
    try:
        rows = service(request).software(edge.principal(request))
    except AppError as e:
        return refused(request, who, e)
    if q:
        rows = [s for s in rows if q.lower() in s["name"].lower()]
    return templates.TemplateResponse(request, "tvm/software.html", _ctx(request, who, rows=rows, q=q))


@router.get("/tvm/software/{software_id}", response_class=HTMLResponse)
def software_item(software_id: str, request: Request, who: Principal = page(VIEW)) -> Response:
    tvm, caller = service(request), edge.principal(request)
    try:
        item = tvm.software_item(caller, software_id)
        machines = tvm.software_machines(caller, software_id)
        vulns = [v for v in tvm.vulnerabilities(caller)
                 if any(e["software"] == item["name"] for e in v["evidence"])]
    except AppError as e:
        return refused(request, who, e)
    return templates.TemplateResponse(request, "tvm/software_item.html", _ctx(
        request, who, item=item, machines=machines, vulns=vulns))


@router.get("/tvm/weaknesses", response_class=HTMLResponse)
def weaknesses_page(request: Request, who: Principal = page(VIEW)) -> Response:
    try:
        rows = service(request).vulnerabilities(edge.principal(request))
    except AppError as e:
        return refused(request, who, e)
    return templates.TemplateResponse(request, "tvm/weaknesses.html", _ctx(request, who, rows=rows))


@router.get("/tvm/recommendations", response_class=HTMLResponse)
def recommendations_page(request: Request, who: Principal = page(VIEW)) -> Response:
    tvm, caller = service(request), edge.principal(request)
    try:
        recs = tvm.recommendations(caller)
        tasks = tvm.remediations(caller)
        exceptions = tvm.exceptions(caller)
    except AppError as e:
        return refused(request, who, e)
    return templates.TemplateResponse(request, "tvm/recommendations.html", _ctx(
        request, who, recs=recs, tasks=tasks, exceptions=exceptions,
        can_remediate=Permission.TVM_REMEDIATION_HANDLING in who.permissions,
        can_except=Permission.TVM_EXCEPTION_HANDLING in who.permissions))


@router.post("/tvm/remediate")
def remediate(request: Request, csrf: Annotated[str, Form()], recommendation: Annotated[str, Form()],
              due_on: Annotated[str, Form()], priority: Annotated[str, Form()], notes: Annotated[str, Form()] = "",
              who: Principal = page(Permission.TVM_REMEDIATION_HANDLING)) -> Response:
    check_form_csrf(request, csrf)
    try:
        service(request).request_remediation(edge.principal(request), recommendation, due_on, priority, notes)
    except AppError as e:
        return refused(request, who, e)
    return RedirectResponse("/tvm/recommendations#tasks", status_code=303)


@router.post("/tvm/except")
def except_(request: Request, csrf: Annotated[str, Form()], recommendation: Annotated[str, Form()],
            justification: Annotated[str, Form()], days: Annotated[str, Form()], scope: Annotated[str, Form()],
            groups: Annotated[str, Form()] = "", comment: Annotated[str, Form()] = "",
            who: Principal = page(Permission.TVM_EXCEPTION_HANDLING)) -> Response:
    check_form_csrf(request, csrf)
    try:
        try:
            n = int(days)
            ids = [int(g) for g in groups.replace(",", " ").split()]
        except ValueError:
            raise InvalidInput("days and device group ids must be whole numbers", field="days") from None
        service(request).create_exception(edge.principal(request), recommendation, justification, n, scope, ids,
                                          comment)
    except AppError as e:
        return refused(request, who, e)
    return RedirectResponse("/tvm/recommendations#exceptions", status_code=303)


@router.post("/tvm/exceptions/{exception_id}/cancel")
def cancel(exception_id: int, request: Request, csrf: Annotated[str, Form()],
           who: Principal = page(Permission.TVM_EXCEPTION_HANDLING)) -> Response:
    check_form_csrf(request, csrf)
    try:
        service(request).cancel_exception(edge.principal(request), exception_id)
    except AppError as e:
        return refused(request, who, e)
    return RedirectResponse("/tvm/recommendations#exceptions", status_code=303)


@router.get("/tvm/devices/{device_id}", response_class=HTMLResponse)
def device_page(device_id: str, request: Request, who: Principal = page(VIEW)) -> Response:
    tvm, caller = service(request), edge.principal(request)
    try:
        software = tvm.machine_software(caller, device_id)
        weaknesses = tvm.machine_vulnerabilities(caller, device_id)
        configuration = tvm.configuration.assessments(caller, device_id)
        secure_score = tvm.configuration.device_score(caller, device_id)
    except AppError as e:
        return refused(request, who, e)
    name = next((r["DeviceName"] for r in [*weaknesses, *configuration] if r["DeviceName"]), device_id)
    return templates.TemplateResponse(request, "tvm/device.html", _ctx(
        request, who, device_id=device_id, name=name, software=software, weaknesses=weaknesses,
        configuration=configuration, secure_score=secure_score))
