"""Live response: one session per device and per user, a command log, and the signed script library."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from vigil.core.actions import ActionType
from vigil.core.liveresponse import (
    LIBRARY_MAX_BYTES,
    PERMISSION,
    CommandLineError,
    help_text,
    parse_command,
)
from vigil.core.rbac import Permission
from vigil.server import actions as action_service
from vigil.server.api._json import iso
from vigil.server.api.machineactions import action_json, get_action, query_actions, start_action
from vigil.server.api.machines import get_machine
from vigil.server.auth import Principal, requires, services
from vigil.server.errors import APIError
from vigil.server.scope import change
from vigil.store import actions as action_store
from vigil.store import audit

router = APIRouter()
BASIC = Permission.LIVE_RESPONSE_BASIC
ADVANCED = Permission.LIVE_RESPONSE_ADVANCED


def _session_json(request: Request, s: action_store.LiveSession) -> dict[str, Any]:
    return {
        "id": s.id, "machineId": s.device_id, "user": s.username, "startedAt": iso(s.started_at),
        "endedAt": iso(s.ended_at), "commands": query_actions(request, session_id=s.id),
    }


@router.post("/machines/{machine_id}/LiveResponse/sessions", status_code=201)
def start_session(machine_id: str, request: Request, who: Principal = requires(BASIC)) -> dict[str, Any]:
    """Defender's limits: one session per user and one per device."""
    get_machine(request, machine_id)
    svc = services(request)
    now = svc.clock.now()
    with svc.engine.begin() as conn:
        mine = action_store.active_sessions(conn, username=who.user.username)
        if any(s.device_id == machine_id for s in mine):
            return _session_json(request, next(s for s in mine if s.device_id == machine_id))
        if mine:
            raise APIError(409, "session_limit", f"you already have a live response session on {mine[0].device_id};"
                           " close it first")
        other = action_store.active_sessions(conn, device_id=machine_id)
        if other:
            raise APIError(409, "session_limit", f"{other[0].username} has a live response session on this device")
        s = action_store.open_session(conn, machine_id, who.user.username, now)
        audit.append(conn, change(request, "liveresponse.session.start", "device", machine_id,
                                  after={"session": s.id}), now)
    return _session_json(request, s)


def my_session(request: Request, who: Principal, machine_id: str) -> dict[str, Any] | None:
    """The caller's open session on this device, if any (the portal's console)."""
    with services(request).engine.connect() as conn:
        mine = action_store.active_sessions(conn, username=who.user.username, device_id=machine_id)
    return _session_json(request, mine[0]) if mine else None


def _own_session(request: Request, session_id: int, who: Principal) -> action_store.LiveSession:
    svc = services(request)
    with svc.engine.connect() as conn:
        try:
            s = action_store.get_session(conn, session_id)
        except action_store.ActionNotFound as e:
            raise APIError(404, "not_found", str(e), field="session_id") from None
    try:
        get_machine(request, s.device_id)
    except APIError:
        # Said of the session, not its device: the device id of another group's session must not leak.
        raise APIError(404, "not_found", f"no live response session {session_id}", field="session_id") from None
    if s.username != who.user.username:
        raise APIError(403, "forbidden", "this live response session belongs to another user")
    return s


@router.get("/liveresponse/sessions/{session_id}")
def session(session_id: int, request: Request, who: Principal = requires(BASIC)) -> dict[str, Any]:
    return _session_json(request, _own_session(request, session_id, who))


@router.post("/liveresponse/sessions/{session_id}/close")
def close_session(session_id: int, request: Request, who: Principal = requires(BASIC)) -> dict[str, Any]:
    s = _own_session(request, session_id, who)
    svc = services(request)
    now = svc.clock.now()
    with svc.engine.begin() as conn:
        action_store.end_session(conn, s.id, now)
        audit.append(conn, change(request, "liveresponse.session.close", "device", s.device_id,
                                  after={"session": s.id}), now)
        s = action_store.get_session(conn, s.id)
    return _session_json(request, s)


class CommandBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    Command: str = Field(min_length=1, max_length=4000)


def run_command(request: Request, session_id: int, line: str, who: Principal) -> dict[str, Any]:
    s = _own_session(request, session_id, who)
    if s.ended_at is not None:
        raise APIError(409, "session_closed", "this live response session is closed; start a new one")
    try:
        cmd = parse_command(line)
    except CommandLineError as e:
        raise APIError(422, "invalid_request", str(e), field="Command") from None
    needed = PERMISSION[cmd.verb.level]
    if needed not in who.permissions:
        raise APIError(403, "forbidden", f"'{cmd.verb.name}' needs the permission '{needed}'")
    if cmd.verb.server_only:
        text = help_text() if cmd.verb.name == "help" else _library_text(request)
        return {"type": "LiveResponse", "status": "Succeeded", "output": {"text": text}}
    params: dict[str, Any] = {"Verb": cmd.verb.name, "Args": list(cmd.args)}
    if cmd.verb.name in ("putfile", "run"):
        svc = services(request)
        with svc.engine.connect() as conn:
            try:
                content, sha = action_store.library_content(conn, cmd.args[0])
            except action_store.ActionNotFound as e:
                raise APIError(404, "not_found", str(e), field="Command") from None
        # The library file travels inside the signed command, so the device runs exactly these bytes.
        params.update(Content=base64.b64encode(content).decode(), ContentSha256=sha)
    a = start_action(request, s.device_id, ActionType.LIVE_RESPONSE, params, cmd.line, session_id=s.id,
                     validated=True)
    return action_json(a)


@router.post("/liveresponse/sessions/{session_id}/commands", status_code=201)
def command(session_id: int, body: CommandBody, request: Request, who: Principal = requires(BASIC)
            ) -> dict[str, Any]:
    """Basic verbs need "Live response capabilities – Basic"; advanced ones are checked per verb."""
    return run_command(request, session_id, body.Command, who)


@router.get("/liveresponse/commands/{action_id}/download")
def download(action_id: str, request: Request, who: Principal = requires(BASIC)) -> Response:
    a = get_action(request, action_id)
    if a.type is not ActionType.LIVE_RESPONSE or a.requestor.split(" ")[0] != who.user.username:
        raise APIError(404, "not_found", "no file fetched by your live response command with this id")
    path = action_service.artifact_path(services(request).settings, action_id)
    if a.artifact_sha256 is None or not path.exists():
        raise APIError(404, "not_found", "the device has not uploaded this file (yet)")
    name = str(a.parameters.get("Args", ["file"])[-1]).rsplit("/", 1)[-1] or "file"
    return FileResponse(path, media_type="application/octet-stream", filename=name,
                        headers={"X-Content-SHA256": a.artifact_sha256})


def _library_text(request: Request) -> str:
    svc = services(request)
    with svc.engine.connect() as conn:
        files = action_store.library(conn)
    return "\n".join(f"{f.name}\t{f.size}\t{f.sha256}\t{f.description}" for f in files) or "(the library is empty)"


@router.get("/liveresponse/library")
def library(request: Request, _: Principal = requires(BASIC)) -> dict[str, Any]:
    svc = services(request)
    with svc.engine.connect() as conn:
        return {"value": [{"name": f.name, "sha256": f.sha256, "size": f.size, "description": f.description,
                           "uploadedBy": f.uploaded_by, "uploadedAt": iso(f.uploaded_at)}
                          for f in action_store.library(conn)]}


class LibraryBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    Name: str = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9._-]+$")
    Description: str = Field(default="", max_length=1000)
    ContentBase64: str


@router.post("/liveresponse/library", status_code=201)
def upload(body: LibraryBody, request: Request, _: Principal = requires(ADVANCED)) -> dict[str, Any]:
    try:
        content = base64.b64decode(body.ContentBase64, validate=True)
    except (binascii.Error, ValueError):
        raise APIError(422, "invalid_request", "ContentBase64 is not base64", field="ContentBase64") from None
    if len(content) > LIBRARY_MAX_BYTES:
        raise APIError(413, "too_large", f"library files are limited to {LIBRARY_MAX_BYTES} bytes")
    svc = services(request)
    now = svc.clock.now()
    with svc.engine.begin() as conn:
        f = action_store.put_library_file(conn, body.Name, content, body.Description, change(request, "", "", "").actor,
                                          now)
        audit.append(conn, change(request, "liveresponse.library.put", "library_file", f.name,
                                  after={"sha256": f.sha256, "size": f.size}), now)
    return {"name": f.name, "sha256": f.sha256, "size": f.size}

