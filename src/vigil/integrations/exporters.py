"""SIEM exporters: one registry, each entry a destination kind that checks its settings and sends records.

``send`` returns only when the receiver has the whole batch, and raises ``ExportFailed`` otherwise; the stream
worker advances its durable cursor only after a return, so a failed batch is sent again (same record ids).

Delivery per kind: the webhook, Splunk HEC and Elasticsearch need a 2xx (Elasticsearch: each item created or
already there, since ``_id`` is the record id); syslog over TCP/TLS half-closes the connection after the batch
and waits for the receiver to close its side, which it does only after reading everything; UDP syslog has no
acknowledgement at all, so it is best effort and says so; the file exporter fsyncs.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol
from urllib.parse import urlparse

import httpx

from vigil.core.registry import Registry
from vigil.integrations import formats
from vigil.integrations.records import Record


class ExportFailed(Exception):
    """The receiver does not have the batch (down, slow, refused); it is sent again after a back-off."""


class BadSettings(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"settings.{field}: {message}")
        self.field = f"settings.{field}"


class DuplicateExporter(ValueError):
    pass


class UnknownExporter(LookupError):
    pass


@dataclass(frozen=True)
class Context:
    tenant_id: str
    hostname: str
    version: str


class Exporter(Protocol):
    # Settings whose values are secrets: stored, never shown back.
    secret_fields: ClassVar[tuple[str, ...]]
    guaranteed: ClassVar[bool]

    def send(self, records: Sequence[Record]) -> None: ...

    def close(self) -> None: ...


ExporterFactory = Callable[[Mapping[str, Any], Context], Exporter]
EXPORTERS: Registry[type[Any]] = Registry("exporter", duplicate=DuplicateExporter, unknown=UnknownExporter)


def _text(settings: Mapping[str, Any], name: str, default: str | None = None) -> str:
    value = settings.get(name, default)
    if not isinstance(value, str) or not value:
        raise BadSettings(name, "required text" if value is None else f"must be text, not {value!r}")
    return value


def _url(settings: Mapping[str, Any], name: str = "url") -> str:
    url = _text(settings, name)
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise BadSettings(name, f"not an http(s) URL: {url!r}")
    return url


def _number(settings: Mapping[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = settings.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise BadSettings(name, f"a number from {low} to {high}, not {value!r}")
    return float(value)


def _verify(settings: Mapping[str, Any]) -> ssl.SSLContext | bool:
    """``ca_file``: a CA bundle for a receiver with its own CA; ``verify: false`` only if asked for in so many words."""
    ca = settings.get("ca_file")
    if ca is not None:
        path = Path(_text(settings, "ca_file"))
        if not path.is_file():
            raise BadSettings("ca_file", f"no such file: {path}")
        return ssl.create_default_context(cafile=str(path))
    verify = settings.get("verify", True)
    if not isinstance(verify, bool):
        raise BadSettings("verify", f"true or false, not {verify!r}")
    return verify


def check_settings(kind: str, settings: Mapping[str, Any]) -> None:
    """Raise UnknownExporter or BadSettings (naming the field) without connecting anywhere."""
    EXPORTERS.get(kind).check(settings)


def build(kind: str, settings: Mapping[str, Any], ctx: Context) -> Exporter:
    cls = EXPORTERS.get(kind)
    cls.check(settings)
    return cls(settings, ctx)  # type: ignore[no-any-return]


def secret_fields(kind: str) -> tuple[str, ...]:
    return tuple(EXPORTERS.get(kind).secret_fields)


class _Http:
    secret_fields: ClassVar[tuple[str, ...]] = ()
    guaranteed: ClassVar[bool] = True

    def __init__(self, settings: Mapping[str, Any], ctx: Context) -> None:
        self.ctx = ctx
        self.url = _url(settings)
        self.client = httpx.Client(verify=_verify(settings), timeout=_number(settings, "timeout", 10, 0.1, 300))

    def post(self, body: bytes, headers: dict[str, str], url: str | None = None) -> httpx.Response:
        try:
            r = self.client.post(url or self.url, content=body, headers=headers)
        except httpx.HTTPError as e:
            raise ExportFailed(f"{type(e).__name__}: {e}") from None
        if r.status_code // 100 != 2:
            raise ExportFailed(f"HTTP {r.status_code}: {r.text[:200]}")
        return r

    def close(self) -> None:
        self.client.close()


@EXPORTERS.add("webhook")
class Webhook(_Http):
    """HTTPS POST of Defender's streaming envelope ``{"records": [...]}``; an optional bearer token."""

    secret_fields = ("token",)

    @staticmethod
    def check(settings: Mapping[str, Any]) -> None:
        _url(settings)
        _verify(settings)
        if "token" in settings:
            _text(settings, "token")

    def __init__(self, settings: Mapping[str, Any], ctx: Context) -> None:
        super().__init__(settings, ctx)
        self.headers = {"Content-Type": "application/json"}
        if settings.get("token"):
            self.headers["Authorization"] = f"Bearer {settings['token']}"

    def send(self, records: Sequence[Record]) -> None:
        body = json.dumps({"records": [r.streaming(self.ctx.tenant_id) for r in records]}, separators=(",", ":"))
        key = f"{records[0].record_id}-{records[-1].record_id}"
        self.post(body.encode(), {**self.headers, "Idempotency-Key": key})


@EXPORTERS.add("splunk_hec")
class SplunkHec(_Http):
    """Splunk's HTTP Event Collector: one ``{"time", "event", "sourcetype", ...}`` object per record."""

    secret_fields = ("token",)

    @staticmethod
    def check(settings: Mapping[str, Any]) -> None:
        _url(settings)
        _text(settings, "token")
        _verify(settings)

    def __init__(self, settings: Mapping[str, Any], ctx: Context) -> None:
        super().__init__(settings, ctx)
        self.headers = {"Authorization": f"Splunk {settings['token']}", "Content-Type": "application/json"}
        self.index, self.sourcetype = settings.get("index"), settings.get("sourcetype", "vigil:streaming")

    def send(self, records: Sequence[Record]) -> None:
        lines = []
        for r in records:
            event: dict[str, Any] = {"event": r.streaming(self.ctx.tenant_id), "sourcetype": self.sourcetype,
                                     "source": r.category, "host": r.properties.get("DeviceName") or self.ctx.hostname}
            if self.index:
                event["index"] = self.index
            lines.append(json.dumps(event, separators=(",", ":")))
        self.post("\n".join(lines).encode(), self.headers)


@EXPORTERS.add("elasticsearch")
class Elasticsearch(_Http):
    """Elasticsearch/OpenSearch ``_bulk`` in ECS field names; ``_id`` is the record id, so a resend is a no-op."""

    secret_fields = ("api_key", "password")

    @staticmethod
    def check(settings: Mapping[str, Any]) -> None:
        _url(settings)
        _text(settings, "index", "vigil-events")
        _verify(settings)

    def __init__(self, settings: Mapping[str, Any], ctx: Context) -> None:
        super().__init__(settings, ctx)
        self.index = settings.get("index", "vigil-events")
        self.headers = {"Content-Type": "application/x-ndjson"}
        if settings.get("api_key"):
            self.headers["Authorization"] = f"ApiKey {settings['api_key']}"
        elif settings.get("username"):
            self.client.auth = httpx.BasicAuth(str(settings["username"]), str(settings.get("password", "")))

    def send(self, records: Sequence[Record]) -> None:
        lines = []
        for r in records:
            lines.append(json.dumps({"create": {"_index": self.index, "_id": r.record_id}}))
            lines.append(json.dumps(formats.ecs(r), separators=(",", ":")))
        answer = self.post(("\n".join(lines) + "\n").encode(), self.headers, self.url.rstrip("/") + "/_bulk")
        body = answer.json()
        if body.get("errors"):
            for item in body.get("items", []):
                result = item.get("create", {})
                if result.get("status") not in (200, 201, 409):  # 409: that id is already stored
                    raise ExportFailed(f"bulk item {result.get('_id')}: {result.get('error')}")


@EXPORTERS.add("syslog")
class Syslog:
    """RFC 5424 syslog with a CEF or LEEF payload, over TCP (RFC 6587 octet counting), TLS, or UDP."""

    secret_fields: ClassVar[tuple[str, ...]] = ()
    guaranteed: ClassVar[bool] = True

    @staticmethod
    def check(settings: Mapping[str, Any]) -> None:
        _text(settings, "host")
        _number(settings, "port", 514, 1, 65535)
        if settings.get("transport", "tcp") not in ("tcp", "tls", "udp"):
            raise BadSettings("transport", f"tcp, tls or udp, not {settings.get('transport')!r}")
        if settings.get("format", "cef") not in formats.PAYLOADS:
            raise BadSettings("format", f"one of {', '.join(formats.PAYLOADS)}, not {settings.get('format')!r}")
        if settings.get("transport") == "tls":
            _verify(settings)

    def __init__(self, settings: Mapping[str, Any], ctx: Context) -> None:
        self.ctx = ctx
        self.host, self.port = str(settings["host"]), int(settings.get("port", 514))
        self.transport = settings.get("transport", "tcp")
        self.payload = formats.PAYLOADS[settings.get("format", "cef")]
        self.timeout = _number(settings, "timeout", 10, 0.1, 300)
        self.tls = _verify(settings) if self.transport == "tls" else None
        self.guaranteed = self.transport != "udp"  # type: ignore[misc]

    def _message(self, r: Record) -> bytes:
        return formats.rfc5424(self.payload(r, self.ctx.version), r, self.ctx.hostname)

    def send(self, records: Sequence[Record]) -> None:
        if self.transport == "udp":
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for r in records:
                    s.sendto(self._message(r)[:65000], (self.host, self.port))
            return
        data = b"".join(formats.octet_counted(self._message(r)) for r in records)
        try:
            raw = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as e:
            raise ExportFailed(f"connect {self.host}:{self.port}: {e}") from None
        # With no listener on a loopback port inside the ephemeral range, the kernel can pick that very port as
        # our source and open a connection to ourselves (TCP simultaneous open): the batch would be "read back"
        # by us and counted as delivered. Treat it as the refusal it is.
        if raw.getsockname() == raw.getpeername():
            raw.close()
            raise ExportFailed(f"connect {self.host}:{self.port}: connection refused (connected to itself)")
        try:
            sock: socket.socket = raw
            if self.tls is not None:
                ctx = self.tls if isinstance(self.tls, ssl.SSLContext) else ssl.create_default_context()
                if self.tls is False:
                    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
                sock = ctx.wrap_socket(raw, server_hostname=self.host)
            sock.sendall(data)
            # The acknowledgement plain syslog lacks: half-close, then wait for the receiver to close its side,
            # which it does once it has read all we sent. A receiver that dies first never closes cleanly.
            raw.shutdown(socket.SHUT_WR)
            while sock.recv(4096):
                pass
        except (OSError, ssl.SSLError) as e:
            raise ExportFailed(f"send to {self.host}:{self.port}: {e}") from None
        finally:
            raw.close()

    def close(self) -> None:
        pass


@EXPORTERS.add("file")
class JsonFile:
    """JSON lines of the streaming records appended to a local file, fsynced; the benchmark's baseline too."""

    secret_fields: ClassVar[tuple[str, ...]] = ()
    guaranteed: ClassVar[bool] = True

    @staticmethod
    def check(settings: Mapping[str, Any]) -> None:
        path = Path(_text(settings, "path"))
        if not path.is_absolute():
            raise BadSettings("path", f"must be absolute: {path}")

    def __init__(self, settings: Mapping[str, Any], ctx: Context) -> None:
        self.ctx, self.path = ctx, Path(settings["path"])

    def send(self, records: Sequence[Record]) -> None:
        lines = "".join(json.dumps(r.streaming(self.ctx.tenant_id), separators=(",", ":")) + "\n" for r in records)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(lines)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise ExportFailed(f"{self.path}: {e}") from None

    def close(self) -> None:
        pass


@EXPORTERS.add("nats")
class NatsJetStream:
    """Each record a JetStream message on ``subject``, ``Nats-Msg-Id`` the record id, each one's PubAck awaited.

    JetStream drops a resent id inside the stream's duplicate window (2 minutes by default), so a batch sent again
    after a lost acknowledgement is stored once. With ``stream`` set, a limits stream of that name over the subject
    is created when missing (never changed when present); without it, a stream over the subject must exist.
    """

    secret_fields: ClassVar[tuple[str, ...]] = ("token", "password")
    guaranteed: ClassVar[bool] = True
    _window = 512  # publishes in flight at once

    @staticmethod
    def check(settings: Mapping[str, Any]) -> None:
        url = _text(settings, "url")
        for part in url.split(","):
            parsed = urlparse(part.strip())
            if parsed.scheme not in ("nats", "tls") or not parsed.hostname:
                raise BadSettings("url", f"not a nats:// or tls:// URL: {part.strip()!r}")
        subject = _text(settings, "subject", "vigil.streaming")
        if any(c in subject for c in " *>\t") or subject.startswith(".") or subject.endswith("."):
            raise BadSettings("subject", f"a literal subject (no spaces or wildcards), not {subject!r}")
        if "stream" in settings:
            name = _text(settings, "stream")
            if any(c in name for c in " .*>\t/\\"):
                raise BadSettings("stream", f"a stream name (no spaces, dots or wildcards), not {name!r}")
        for name in ("token", "user", "password"):
            if name in settings:
                _text(settings, name)
        _number(settings, "timeout", 10, 0.1, 300)

    def __init__(self, settings: Mapping[str, Any], ctx: Context) -> None:
        import asyncio

        self.ctx, self.url = ctx, str(settings["url"])
        self.subject = str(settings.get("subject", "vigil.streaming"))
        self.stream = settings.get("stream")
        self.timeout = _number(settings, "timeout", 10, 0.1, 300)
        self.auth = {k: settings[k] for k in ("token", "user", "password") if settings.get(k)}
        self.loop = asyncio.new_event_loop()  # the destination's thread runs it, one batch at a time
        self.nc: Any = None
        self.js: Any = None

    async def _connect(self) -> None:
        import nats
        from nats.js.api import StreamConfig
        from nats.js.errors import NotFoundError

        nc = await nats.connect(servers=[u.strip() for u in self.url.split(",")], connect_timeout=self.timeout,
                                allow_reconnect=False, max_reconnect_attempts=0, **self.auth)
        js = nc.jetstream(timeout=self.timeout)
        if self.stream:
            try:
                await js.stream_info(self.stream)
            except NotFoundError:
                await js.add_stream(StreamConfig(name=self.stream, subjects=[self.subject]))
        self.nc, self.js = nc, js

    async def _send(self, records: Sequence[Record]) -> None:
        import asyncio

        if self.nc is None or self.nc.is_closed or not self.nc.is_connected:
            await self._drop()
            await self._connect()
        for i in range(0, len(records), self._window):
            chunk = records[i:i + self._window]
            bodies = [json.dumps(r.streaming(self.ctx.tenant_id), separators=(",", ":")).encode() for r in chunk]
            await asyncio.gather(*(self.js.publish(self.subject, body, timeout=self.timeout,
                                                   headers={"Nats-Msg-Id": r.record_id})
                                   for r, body in zip(chunk, bodies, strict=True)))

    async def _drop(self) -> None:
        if self.nc is not None and not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await self.nc.close()
        self.nc = self.js = None

    def send(self, records: Sequence[Record]) -> None:
        import nats.errors
        import nats.js.errors

        try:
            self.loop.run_until_complete(_bounded(self._send(records), self.timeout * 4 + 5))
        except (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError) as e:
            self.loop.run_until_complete(self._drop())
            what = getattr(e, "description", None) or str(e) or type(e).__name__
            raise ExportFailed(f"NATS {self.url} subject {self.subject}: {what}") from None

    def close(self) -> None:
        self.loop.run_until_complete(self._drop())
        self.loop.close()


async def _bounded(coro: Any, timeout: float) -> None:
    import asyncio

    await asyncio.wait_for(coro, timeout=timeout)
