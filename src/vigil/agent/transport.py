"""HTTP to the server's agent API: pinned TLS, bearer credential, gzip bodies, typed outcomes."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
from pydantic import BaseModel, ValidationError

from vigil import __version__
from vigil.agent.errors import AgentError, ServerRejected
from vigil.agent.identity import Identity, pinned_context
from vigil.wire import (
    ACTION_ARTIFACT_PATH,
    ACTION_RESULT_PATH,
    ACTIONS_POLL_PATH,
    HEARTBEAT_PATH,
    TELEMETRY_PATH,
    ActionResult,
    CommandPoll,
    ErrorBody,
    Heartbeat,
    HeartbeatResponse,
    TelemetryAck,
)

M = TypeVar("M", bound=BaseModel)


class ServerUnavailable(AgentError):
    """Worth retrying later: unreachable, timed out, 5xx or 429; ``retry_after`` when the server said."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CredentialRevoked(ServerRejected):
    """401/403: the device was offboarded or its credential revoked."""


def rejection(response: httpx.Response, where: str) -> ServerRejected:
    """Turn an error response into a typed error, using the server's ``ErrorBody`` when present."""
    try:
        body = ErrorBody.model_validate_json(response.content)
        error, detail, field = body.error, body.detail, body.field
    except ValidationError:
        error, detail, field = response.reason_phrase or "error", response.text[:300], None
    cls = CredentialRevoked if response.status_code in (401, 403) else ServerRejected
    return cls(response.status_code, error, detail, field, where)


def check(response: httpx.Response, where: str) -> None:
    status = response.status_code
    if status < 400:
        return
    if status == 429 or status >= 500:
        retry = response.headers.get("retry-after")
        raise ServerUnavailable(
            f"{where}: server answered {status}", float(retry) if retry and retry.isdigit() else None
        )
    raise rejection(response, where)


class AgentTransport:
    """One keep-alive client for the lifetime of the agent."""

    def __init__(self, identity: Identity, timeout: float, transport: httpx.BaseTransport | None = None) -> None:
        self._timeout = timeout
        self._client = httpx.Client(
            base_url=identity.server_url,
            verify=pinned_context(identity.ca_cert_pem, identity.ca_sha256),
            timeout=timeout,
            headers={
                "Authorization": f"Bearer {identity.credential}",
                "User-Agent": f"vigil-agent/{__version__}",
            },
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def _post(self, path: str, content: bytes, headers: dict[str, str], timeout: float | None) -> httpx.Response:
        try:
            kwargs: dict[str, Any] = {"content": content, "headers": headers}
            if timeout is not None:
                kwargs["timeout"] = timeout
            return self._client.post(path, **kwargs)
        except httpx.TransportError as e:  # refused, reset, timeout, TLS failure...
            raise ServerUnavailable(f"{path}: {type(e).__name__}: {e or 'no detail'}") from e

    def send_batch(self, body: bytes, timeout: float | None = None) -> TelemetryAck:
        response = self._post(
            TELEMETRY_PATH,
            gzip.compress(body, compresslevel=5),
            {"Content-Type": "application/json", "Content-Encoding": "gzip"},
            timeout,
        )
        check(response, f"POST {TELEMETRY_PATH}")
        return _parse(TelemetryAck, response, TELEMETRY_PATH)

    def heartbeat(self, beat: Heartbeat, timeout: float | None = None) -> HeartbeatResponse:
        response = self._post(
            HEARTBEAT_PATH, beat.model_dump_json().encode(), {"Content-Type": "application/json"}, timeout
        )
        check(response, f"POST {HEARTBEAT_PATH}")
        return _parse(HeartbeatResponse, response, HEARTBEAT_PATH)


    def poll_commands(self, wait: float) -> CommandPoll:
        """Long-poll: the server answers as soon as a command waits, or after ``wait`` seconds."""
        response = self._post(f"{ACTIONS_POLL_PATH}?wait={wait:g}", b"", {}, wait + self._timeout)
        check(response, f"POST {ACTIONS_POLL_PATH}")
        return _parse(CommandPoll, response, ACTIONS_POLL_PATH)

    def report_result(self, action_id: str, result: ActionResult) -> None:
        path = ACTION_RESULT_PATH.format(action_id=action_id)
        response = self._post(path, result.model_dump_json().encode(), {"Content-Type": "application/json"}, None)
        check(response, f"POST {path}")

    def upload_artifact(self, action_id: str, file: Path) -> None:
        path = ACTION_ARTIFACT_PATH.format(action_id=action_id)
        with file.open("rb") as f:
            try:
                response = self._client.post(path, content=f, headers={"Content-Type": "application/octet-stream"},
                                             timeout=max(self._timeout, 300.0))
            except httpx.TransportError as e:
                raise ServerUnavailable(f"{path}: {type(e).__name__}: {e or 'no detail'}") from e
        check(response, f"POST {path}")


def _parse(model: type[M], response: httpx.Response, where: str) -> M:
    try:
        return model.model_validate(orjson.loads(response.content))
    except (orjson.JSONDecodeError, ValidationError) as e:
        # A 2xx we cannot read is a server bug or a proxy in the way; retry rather than lose data.
        raise ServerUnavailable(f"{where}: unreadable {response.status_code} answer: {e}") from e
