"""HTTP to the server's agent API: pinned TLS, bearer credential, gzip bodies, typed outcomes.

The standard library's ``http.client`` does the HTTP: the agent makes a few kinds of POST to one
server, and httpx (with the rich and pygments its command-line module imports) cost the agent
~13 MiB of resident memory.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import logging
import os
import select
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar
from urllib.parse import unquote, urlsplit

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
from vigil.wire.av import AV_DEFINITIONS_PATH, AV_UPDATE_PATH, AvUpdate, AvUpdateRequest

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
# What a request can fail with before an answer is read: refused, reset, timed out, TLS, malformed answer...
TRANSPORT_ERRORS = (OSError, http.client.HTTPException)
UPLOAD_BLOCK = 64 * 1024


class ServerUnavailable(AgentError):
    """Worth retrying later: unreachable, timed out, 5xx or 429; ``retry_after`` when the server said.

    ``status`` is the HTTP status when the server answered (5xx, 429), None when it could not be reached."""

    def __init__(self, message: str, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class CredentialRevoked(ServerRejected):
    """401/403: the device was offboarded or its credential revoked."""


class ConnectFailed(Exception):
    """No connection: TCP connect or the TLS handshake failed (``cause``; ``ssl.SSLError`` for TLS).

    Timeouts are not wrapped: like every failure after the connection is made, they stay as raised."""

    def __init__(self, cause: OSError) -> None:
        super().__init__(str(cause))
        self.cause = cause


@dataclass(frozen=True)
class Response:
    status_code: int
    reason_phrase: str
    headers: http.client.HTTPMessage
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


@dataclass(frozen=True)
class _Proxy:
    host: str
    port: int
    authorization: str | None


@dataclass(frozen=True)
class ProxyEnv:
    """The proxy settings of the agent's environment, read once at the edge (``ProxyEnv.of(os.environ)``).

    As httpx reads them: lower case before upper. The default is no proxy.
    """

    https_proxy: str = ""
    http_proxy: str = ""
    all_proxy: str = ""
    no_proxy: str = ""

    @classmethod
    def of(cls, environ: Mapping[str, str]) -> ProxyEnv:
        def var(name: str) -> str:
            return environ.get(name) or environ.get(name.upper()) or ""

        return cls(var("https_proxy"), var("http_proxy"), var("all_proxy"), var("no_proxy"))


def _env_proxy(scheme: str, host: str, port: int, env: ProxyEnv) -> _Proxy | None:
    """The HTTP proxy ``env`` names for this scheme and host: ``https_proxy`` (or ``http_proxy``) else
    ``all_proxy``, unless ``no_proxy`` lists the host or one of its domains (or ``*``)."""
    url = (env.https_proxy if scheme == "https" else env.http_proxy) or env.all_proxy
    if not url:
        return None
    host = host.lower()
    for entry in env.no_proxy.split(","):
        name = entry.strip().lower().lstrip(".")
        if name == "*" or name in (host, f"{host}:{port}") or (name and host.endswith(f".{name}")):
            return None
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http" or not parts.hostname:
        log.warning("ignoring the %s proxy %s: only http:// proxies are supported", scheme, parts.scheme)
        return None
    try:
        proxy_port = parts.port or 80
    except ValueError as e:
        raise ValueError(f"the {scheme} proxy setting {url!r}: {e}") from e
    auth = None
    if parts.username is not None:
        token = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        auth = "Basic " + base64.b64encode(token).decode()
    return _Proxy(parts.hostname, proxy_port, auth)


def _idle_and_open(conn: http.client.HTTPConnection) -> bool:
    """A kept-alive connection is usable when nothing is waiting to be read (readable = the server closed it)."""
    if conn.sock is None:
        return False
    poller = select.poll()
    try:
        poller.register(conn.sock, select.POLLIN)
        return not poller.poll(0)
    except (OSError, ValueError):
        return False


class HttpClient:
    """Keep-alive HTTP/1.1 POSTs to one server, over TLS with ``context`` for https; safe across threads.

    A request takes an idle connection or opens one; only a connection that carried a whole answer goes
    back to the idle set, so one that failed is never reused and the next request opens a new one. An
    idle connection the server has closed in the meantime is dropped before use.
    """

    MAX_IDLE = 4

    def __init__(self, base_url: str, context: ssl.SSLContext, timeout: float,
                 headers: dict[str, str] | None = None, proxy: ProxyEnv | None = None) -> None:
        """Raises ValueError when ``base_url`` is not an https:// URL; ``proxy`` None means no proxy."""
        url = urlsplit(base_url)
        # Plain http would send the device credential and telemetry in clear and trust whoever answers:
        # the agent talks to its server over TLS with the pinned CA, or not at all.
        if url.scheme != "https" or not url.hostname:
            raise ValueError(f"server_url: {base_url!r} is not an https:// URL; the agent talks to its server only"
                             " over TLS")
        self._host = url.hostname
        try:
            self._port = url.port or 443
        except ValueError as e:
            raise ValueError(f"the server URL {base_url!r}: {e}") from e
        self._prefix = url.path.rstrip("/")
        self._context = context
        self._timeout = timeout
        self._headers = dict(headers or {})
        self._proxy = _env_proxy(url.scheme, self._host, self._port, proxy or ProxyEnv())
        self._lock = threading.Lock()
        self._idle: list[http.client.HTTPConnection] = []
        self._busy: set[http.client.HTTPConnection] = set()
        self._closed = False

    def close(self) -> None:
        """Close idle connections now and busy ones when their request ends."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def post(self, path: str, body: bytes | BinaryIO, headers: dict[str, str],
             timeout: float | None = None) -> Response:
        """POST ``body`` (bytes, or a binary file sent in blocks with its size as Content-Length).

        Raises ConnectFailed when no connection could be made, another OSError (TimeoutError, reset...)
        or http.client.HTTPException when the exchange failed; any HTTP status is a Response."""
        conn = self._checkout()
        try:
            conn.timeout = self._timeout if timeout is None else timeout
            if conn.sock is None:
                try:
                    conn.connect()
                except TimeoutError:
                    raise
                except OSError as e:
                    raise ConnectFailed(e) from e
            else:
                conn.sock.settimeout(conn.timeout)
            response, reusable = self._exchange(conn, path, body, headers)
        except BaseException:
            self._checkin(conn, reusable=False)
            raise
        self._checkin(conn, reusable)
        return response

    def _exchange(self, conn: http.client.HTTPConnection, path: str, body: bytes | BinaryIO,
                  headers: dict[str, str]) -> tuple[Response, bool]:
        target = self._prefix + path
        sent = {**self._headers, **headers}
        if not isinstance(body, bytes):
            sent["Content-Length"] = str(os.fstat(body.fileno()).st_size - body.tell())
        try:
            conn.request("POST", target, body=body, headers=sent)
        except (BrokenPipeError, ConnectionResetError) as e:
            # The server may answer before it has read the whole body (too large, refused): read that answer.
            try:
                return self._read(conn)[0], False
            except TRANSPORT_ERRORS:
                raise e from None
        return self._read(conn)

    @staticmethod
    def _read(conn: http.client.HTTPConnection) -> tuple[Response, bool]:
        answer = conn.getresponse()
        content = answer.read()
        response = Response(answer.status, answer.reason, answer.headers, content)
        return response, not answer.will_close and conn.sock is not None

    def _checkout(self) -> http.client.HTTPConnection:
        with self._lock:
            if self._closed:
                raise ConnectionAbortedError("the HTTP client is closed")
            while self._idle:
                conn = self._idle.pop()  # the most recently used: the likeliest to be still open
                if _idle_and_open(conn):
                    self._busy.add(conn)
                    return conn
                conn.close()
            conn = self._new_connection()
            self._busy.add(conn)
            return conn

    def _checkin(self, conn: http.client.HTTPConnection, reusable: bool) -> None:
        with self._lock:
            self._busy.discard(conn)
            if reusable and not self._closed and len(self._idle) < self.MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def _new_connection(self) -> http.client.HTTPConnection:
        host, port = (self._host, self._port) if self._proxy is None else (self._proxy.host, self._proxy.port)
        conn = http.client.HTTPSConnection(host, port, timeout=self._timeout, context=self._context,
                                           blocksize=UPLOAD_BLOCK)
        if self._proxy is not None:  # CONNECT tunnel; TLS (and its pin) end to end with the server
            auth = {"Proxy-Authorization": self._proxy.authorization} if self._proxy.authorization else None
            conn.set_tunnel(self._host, self._port, auth)
        return conn


def rejection(response: Response, where: str) -> ServerRejected:
    """Turn an error response into a typed error, using the server's ``ErrorBody`` when present."""
    try:
        body = ErrorBody.model_validate_json(response.content)
        error, detail, field = body.error, body.detail, body.field
    except ValidationError:
        error, detail, field = response.reason_phrase or "error", response.text[:300], None
    cls = CredentialRevoked if response.status_code in (401, 403) else ServerRejected
    return cls(response.status_code, error, detail, field, where)


def check(response: Response, where: str) -> None:
    status = response.status_code
    if status < 400:
        return
    if status == 429 or status >= 500:
        retry = response.headers.get("retry-after")
        raise ServerUnavailable(
            f"{where}: server answered {status}", float(retry) if retry and retry.isdigit() else None, status
        )
    raise rejection(response, where)


def unavailable(where: str, e: BaseException) -> ServerUnavailable:
    cause = e.cause if isinstance(e, ConnectFailed) else e
    return ServerUnavailable(f"{where}: {type(cause).__name__}: {str(cause) or 'no detail'}")


class AgentTransport:
    """The agent's keep-alive HTTP client for its whole lifetime."""

    def __init__(self, identity: Identity, timeout: float, proxy: ProxyEnv | None = None) -> None:
        self._timeout = timeout
        try:
            self._client = HttpClient(
                identity.server_url,
                pinned_context(identity.ca_cert_pem, identity.ca_sha256),
                timeout,
                {"Authorization": f"Bearer {identity.credential}", "User-Agent": f"vigil-agent/{__version__}"},
                proxy,
            )
        except ValueError as e:
            raise AgentError(f"cannot talk to the server: {e}") from e

    def close(self) -> None:
        self._client.close()

    def _post(self, path: str, content: bytes | BinaryIO, headers: dict[str, str], timeout: float | None
              ) -> Response:
        try:
            return self._client.post(path, content, headers, timeout)
        except (ConnectFailed, *TRANSPORT_ERRORS) as e:  # refused, reset, timeout, TLS failure...
            raise unavailable(path, e) from e

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

    def av_update(self, request: AvUpdateRequest) -> AvUpdate:
        """The device group's antivirus policy and the version of the bundle the server serves it."""
        response = self._post(AV_UPDATE_PATH, request.model_dump_json().encode(),
                              {"Content-Type": "application/json"}, None)
        check(response, f"POST {AV_UPDATE_PATH}")
        return _parse(AvUpdate, response, AV_UPDATE_PATH)

    def av_definitions(self) -> bytes:
        """The signed bundle itself (the caller verifies it before use)."""
        response = self._post(AV_DEFINITIONS_PATH, b"", {}, max(self._timeout, 300.0))
        check(response, f"POST {AV_DEFINITIONS_PATH}")
        return response.content

    def upload_artifact(self, action_id: str, file: Path) -> None:
        """Streams the file (never whole in memory) with its size as Content-Length."""
        path = ACTION_ARTIFACT_PATH.format(action_id=action_id)
        with file.open("rb") as f:
            response = self._post(path, f, {"Content-Type": "application/octet-stream"},
                                  max(self._timeout, 300.0))
        check(response, f"POST {path}")


def _parse(model: type[M], response: Response, where: str) -> M:
    try:
        return model.model_validate(orjson.loads(response.content))
    except (orjson.JSONDecodeError, ValidationError) as e:
        # A 2xx we cannot read is a server bug or a proxy in the way; retry rather than lose data.
        raise ServerUnavailable(f"{where}: unreadable {response.status_code} answer: {e}") from e
