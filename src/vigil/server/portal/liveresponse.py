"""The live-response console: a session on one device, its command log with output as it arrives, the library."""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from vigil.core.liveresponse import LIBRARY_MAX_BYTES, help_text
from vigil.core.rbac import Permission
from vigil.server.api import liveresponse as api_lr
from vigil.server.api.machines import get_machine
from vigil.server.auth import CSRF_COOKIE, Principal
from vigil.server.errors import APIError
from vigil.server.portal.web import check_form_csrf, page, templates

router = APIRouter(include_in_schema=False)
BASIC = Permission.LIVE_RESPONSE_BASIC


def _console(request: Request, who: Principal, machine_id: str, local: dict[str, Any] | None = None) -> Response:
    m = get_machine(request, machine_id)
    return templates.TemplateResponse(request, "liveresponse/console.html", {
        "user": who.user, "m": m, "session": api_lr.my_session(request, who, machine_id),
        "csrf": request.cookies.get(CSRF_COOKIE, ""), "verbs": help_text(), "local": local,
        "library": api_lr.library(request, who)["value"],
        "advanced": Permission.LIVE_RESPONSE_ADVANCED in who.permissions,
    })


@router.get("/devices/{machine_id}/liveresponse", response_class=HTMLResponse)
def console(machine_id: str, request: Request, who: Principal = page(BASIC)) -> Response:
    return _console(request, who, machine_id)


@router.post("/devices/{machine_id}/liveresponse")
def start(machine_id: str, request: Request, csrf: Annotated[str, Form()], who: Principal = page(BASIC)) -> Response:
    """One session per user and per device (the API's limits, with its messages)."""
    check_form_csrf(request, csrf)
    api_lr.start_session(machine_id, request, who)
    return RedirectResponse(f"/devices/{machine_id}/liveresponse", status_code=303)


@router.get("/liveresponse/{session_id}/log", response_class=HTMLResponse)
def log(session_id: int, request: Request, who: Principal = page(BASIC)) -> Response:
    """The command log alone; the console's script fetches it while a command is still running."""
    return templates.TemplateResponse(request, "liveresponse/log.html", {
        "session": api_lr.session(session_id, request, who)})


@router.post("/liveresponse/{session_id}/command", response_class=HTMLResponse)
def command(
    session_id: int, request: Request, csrf: Annotated[str, Form()], line: Annotated[str, Form()] = "",
    who: Principal = page(BASIC),
) -> Response:
    check_form_csrf(request, csrf)
    try:
        api_lr.CommandBody(Command=line.strip())
    except ValidationError:
        raise APIError(422, "invalid_request", "Command: type a command (at most 4000 characters)",
                       field="Command") from None
    out = api_lr.run_command(request, session_id, line.strip(), who)
    s = api_lr.session(session_id, request, who)
    if out.get("id") is None:  # help and library are answered by the server, not queued for the device
        return _console(request, who, s["machineId"], {"line": line.strip(), **out})
    return RedirectResponse(f"/devices/{s['machineId']}/liveresponse", status_code=303)


@router.post("/liveresponse/{session_id}/close")
def close(session_id: int, request: Request, csrf: Annotated[str, Form()], who: Principal = page(BASIC)) -> Response:
    check_form_csrf(request, csrf)
    s = api_lr.close_session(session_id, request, who)
    return RedirectResponse(f"/devices/{s['machineId']}/liveresponse", status_code=303)


@router.post("/liveresponse/library")
async def upload(
    request: Request, csrf: Annotated[str, Form()], machine_id: Annotated[str, Form()],
    file: Annotated[UploadFile, File()], description: Annotated[str, Form()] = "",
    who: Principal = page(Permission.LIVE_RESPONSE_ADVANCED),
) -> Response:
    """A script for the library; it travels to a device only inside a signed command (`run`, `putfile`)."""
    check_form_csrf(request, csrf)
    content = await file.read(LIBRARY_MAX_BYTES + 1)
    if len(content) > LIBRARY_MAX_BYTES:
        raise APIError(413, "too_large", f"library files are limited to {LIBRARY_MAX_BYTES} bytes", field="file")
    try:
        body = api_lr.LibraryBody(Name=file.filename or "", Description=description.strip(),
                                  ContentBase64=base64.b64encode(content).decode())
    except ValidationError:
        raise APIError(422, "invalid_request", "file: its name may hold only letters, digits, '.', '_' and '-'",
                       field="file") from None
    api_lr.upload(body, request, who)
    return RedirectResponse(f"/devices/{machine_id}/liveresponse", status_code=303)
