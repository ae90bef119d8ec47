"""The agent side of response actions: long-poll for signed commands, results, artifact uploads."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from typing import Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from vigil.server import actions as action_service
from vigil.server.auth import authenticated_device, services
from vigil.server.errors import APIError
from vigil.store import actions as action_store
from vigil.wire import (
    ACTION_ARTIFACT_PATH,
    ACTION_RESULT_PATH,
    ACTIONS_POLL_PATH,
    MAX_ARTIFACT_BYTES,
    MAX_POLL_SECONDS,
    ActionResult,
    CommandPoll,
    SignedCommand,
)

router = APIRouter(tags=["agent"])
POLL_INTERVAL = 0.5  # the database is the queue, so several server processes can share devices


def pending_commands(request: Request, device_id: str) -> list[SignedCommand]:
    """Commands for ``device_id`` not yet handed out (each goes out once); also used by heartbeats."""
    svc = services(request)
    now = svc.clock.now()
    with svc.engine.begin() as conn:
        action_store.expire_overdue(conn, now)
        raw = action_store.take_pending(conn, device_id, now)
    # Stored as signed: a row altered in the database fails the agent's check, which is the point.
    return [SignedCommand.model_validate(c) for c in raw]


@router.post(ACTIONS_POLL_PATH, response_model=CommandPoll)
async def poll(
    request: Request, wait: float = Query(default=MAX_POLL_SECONDS, ge=0, le=MAX_POLL_SECONDS),
    device_id: str = authenticated_device,
) -> CommandPoll:
    deadline = time.monotonic() + wait
    while True:
        # Checked before taking commands: a poll left open by an agent that has since died (or
        # restarted) must not take the next command and answer it into a closed socket.
        if await request.is_disconnected():
            return CommandPoll()
        commands = await run_in_threadpool(pending_commands, request, device_id)
        if commands or time.monotonic() >= deadline:
            return CommandPoll(commands=commands)
        await asyncio.sleep(POLL_INTERVAL)


def _result(request: Request, device_id: str, action_id: str, body: ActionResult) -> dict[str, Any]:
    svc = services(request)
    now = svc.clock.now()
    try:
        with svc.engine.begin() as conn:
            done = action_service.record_result(conn, device_id, action_id, body, now)
    except action_store.ActionNotFound as e:
        raise APIError(404, "not_found", str(e), field="action_id") from None
    return {"id": done.id, "status": done.status.value}


@router.post(ACTION_RESULT_PATH)
def result(action_id: str, body: ActionResult, request: Request, device_id: str = authenticated_device
           ) -> dict[str, Any]:
    return _result(request, device_id, action_id, body)


@router.post(ACTION_ARTIFACT_PATH)
async def artifact(action_id: str, request: Request, device_id: str = authenticated_device) -> dict[str, Any]:
    """A package or a fetched file, streamed to disk with a size cap; one per action, replaced on resend."""
    svc = services(request)

    def check() -> None:
        with svc.engine.connect() as conn:
            try:
                a = action_store.get(conn, action_id)
            except action_store.ActionNotFound as e:
                raise APIError(404, "not_found", str(e), field="action_id") from None
        if a.device_id != device_id:
            raise APIError(404, "not_found", f"no machine action with id {action_id!r} for this device")
        if a.type not in action_service.ARTIFACT_TYPES:
            raise APIError(409, "conflict", f"a {a.type} action has no artifact")

    await run_in_threadpool(check)
    final = action_service.artifact_path(svc.settings, action_id)
    final.parent.mkdir(mode=0o700, exist_ok=True)
    part = final.with_suffix(".part")
    digest, size = hashlib.sha256(), 0
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_ARTIFACT_BYTES:
                    raise APIError(413, "too_large", f"artifact over {MAX_ARTIFACT_BYTES} bytes")
                digest.update(chunk)
                f.write(chunk)
        os.replace(part, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
        raise

    def record() -> None:
        with svc.engine.begin() as conn:
            action_store.set_artifact(conn, action_id, digest.hexdigest(), size, svc.clock.now())

    await run_in_threadpool(record)
    return {"id": action_id, "sha256": digest.hexdigest(), "size": size}

