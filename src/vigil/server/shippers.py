"""Windows events from shippers: ``POST /ingest/v1/windows`` (Winlogbeat or Fluent Bit JSON: an array, one
object, JSON lines, or Elasticsearch's ``_bulk`` lines) and ``/ingest/v1/windows/evtx`` (an EVTX file).

Each source authenticates with its own secret (``Authorization: Bearer vgi_...``, or ``ApiKey`` as Winlogbeat's
Elasticsearch output sends it). Events are matched by the Windows rules as ``vigil triage`` matches them, mapped
to Defender's tables (``vigil.integrations.winlog.MAPPINGS``) and stored per host through the ingest pipeline,
so alerts, incidents and streaming export follow as for agents; each host is a device with its OS.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import gzip
import hashlib
import json
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from vigil.app import shippers
from vigil.app.stores import source_store
from vigil.core.telemetry import parse_timestamp, validate_batch
from vigil.detect.events import flatten_evtx
from vigil.detect.triage import TriageInputError, read_evtx_records
from vigil.integrations import winlog
from vigil.server.auth import PERMISSION_ATTR, services
from vigil.server.errors import APIError

router = APIRouter(prefix="/ingest/v1", tags=["ingest"])
MAX_BODY = 32 * 1024 * 1024
MAX_LISTED = 20


def _source_guard() -> Callable[[Request], shippers.Source]:
    def source(request: Request) -> shippers.Source:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        secret = value.strip()
        if scheme.lower() == "apikey":  # Winlogbeat: base64("id:key"); the key is the secret
            with contextlib.suppress(binascii.Error, UnicodeDecodeError):
                secret = base64.b64decode(secret, validate=True).decode().partition(":")[2] or secret
        elif scheme.lower() != "bearer":
            raise APIError(401, "unauthenticated", "send the source's secret as a bearer token",
                           headers={"WWW-Authenticate": "Bearer"})
        found = shippers.authenticate(source_store(services(request).engine), secret)
        if found is None:
            raise APIError(401, "unauthenticated", "unknown or revoked event source secret")
        return found

    setattr(source, PERMISSION_ATTR, "event-source")
    return source


authenticated_source = Depends(_source_guard())


async def _body(request: Request) -> bytes:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise APIError(413, "too_large", f"the body is over {MAX_BODY} bytes")
    encoding = request.headers.get("content-encoding", "").lower()
    if encoding in ("gzip", "deflate"):
        try:
            d = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
            raw = d.decompress(raw, MAX_BODY + 1)
        except (zlib.error, gzip.BadGzipFile) as e:
            raise APIError(400, "invalid_request", f"the body is not {encoding}: {e}") from None
        if len(raw) > MAX_BODY:
            raise APIError(413, "too_large", f"the body is over {MAX_BODY} bytes unpacked")
    return raw


def _documents(raw: bytes) -> list[Any]:
    """The posted events: a JSON array or object, or JSON lines, where Elasticsearch ``_bulk`` action lines
    (``{"index": ...}``, ``{"create": ...}``) are skipped."""
    text = raw.decode("utf-8", errors="strict").strip()
    if not text:
        raise APIError(400, "invalid_request", "the body is empty")
    if text[0] == "[":
        try:
            docs = json.loads(text)
        except json.JSONDecodeError as e:
            raise APIError(400, "invalid_request", f"not JSON: {e}") from None
        return list(docs)
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as e:
            raise APIError(400, "invalid_request", f"line {number}: not JSON: {e}", field=f"line {number}") from None
        if isinstance(doc, dict) and len(doc) == 1 and next(iter(doc)) in ("index", "create"):
            continue
        out.append(doc)
    return out


def _ingest(request: Request, source: shippers.Source, events: list[winlog.WindowsEvent],
            rejected: list[dict[str, Any]], body_digest: str) -> dict[str, Any]:
    svc = services(request)
    by_host: dict[str, list[winlog.WindowsEvent]] = {}
    for e in events:
        by_host.setdefault(e.host.name, []).append(e)
    hosts = [shippers.ShippedHost(winlog.device_id_for(source.id, name), name, es[-1].host.os_platform,
                                  es[-1].host.os_version, es[-1].host.os_build, es[-1].host.shipper)
             for name, es in by_host.items()]
    shippers.arrived(source_store(svc.engine), svc.clock, source, hosts, len(events))
    stored = alerts = unmapped = 0
    detector = svc.ingest.detector
    windows_hits = getattr(detector, "windows_hits", None)
    for host in hosts:
        mine = by_host[host.name]
        rows = []
        for i, e in enumerate(mine):
            row = winlog.to_row(e, host.device_id, e.record_id if e.record_id is not None else i)
            if row is None:
                unmapped += 1
            else:
                rows.append(row)
        batch = validate_batch(rows, host.device_id, svc.clock.now())
        for r in batch.rejected[:MAX_LISTED]:
            rejected.append({"host": host.name, "field": r.field, "reason": r.reason})
        hits = windows_hits(host.device_id, [(e.flat, parse_timestamp(e.timestamp)) for e in mine]) \
            if windows_hits is not None else []
        ack = svc.ingest.ingest(host.device_id, f"ship-{body_digest[:40]}", batch.rows, batch.rejected, hits=hits)
        stored += 0 if ack.duplicate else ack.accepted
        alerts += 0 if ack.duplicate else len(hits)
    return {"received": len(events) + len(rejected), "stored": stored, "unmapped": unmapped, "detections": alerts,
            "devices": [{"id": h.device_id, "computerDnsName": h.name} for h in hosts], "rejected": rejected}


def _parse(docs: list[Any]) -> tuple[list[winlog.WindowsEvent], list[dict[str, Any]]]:
    events, rejected = [], []
    for i, doc in enumerate(docs):
        try:
            e = winlog.parse_event(doc, f"events[{i}]")
            parse_timestamp(e.timestamp)
        except winlog.ShipperFormatError as err:
            rejected.append({"index": i, "reason": str(err)})
            continue
        except ValueError:
            rejected.append({"index": i, "reason": f"events[{i}]: not an ISO 8601 time: {e.timestamp!r}"})
            continue
        events.append(e)
    if docs and not events:
        first = str(rejected[0]["reason"])
        raise APIError(400, "invalid_request", f"no event could be read; the first: {first}",
                       field=first.split(":", 1)[0])
    return events, rejected


@router.post("/windows")
async def windows_events(request: Request, source: shippers.Source = authenticated_source) -> dict[str, Any]:
    raw = await _body(request)
    try:
        docs = _documents(raw)
    except UnicodeDecodeError:
        raise APIError(400, "invalid_request", "the body is not UTF-8") from None
    events, rejected = _parse(docs)
    return _ingest(request, source, events, rejected, hashlib.sha256(raw).hexdigest())


@router.post("/windows/_bulk", response_model=None)
async def windows_bulk(request: Request, source: shippers.Source = authenticated_source) -> JSONResponse:
    """Elasticsearch's bulk API shape, for Winlogbeat's ``output.elasticsearch`` pointed at Vigil."""
    raw = await _body(request)
    docs = _documents(raw)
    events, rejected = _parse(docs)
    _ingest(request, source, events, rejected, hashlib.sha256(raw).hexdigest())
    bad = {r["index"] for r in rejected if "index" in r}
    items = [{"create": {"status": 400 if i in bad else 201, **({"error": {"type": "mapper_parsing_exception",
              "reason": next(r["reason"] for r in rejected if r.get("index") == i)}} if i in bad else {})}}
             for i in range(len(docs))]
    return JSONResponse({"took": 0, "errors": bool(bad), "items": items})


@router.post("/windows/evtx")
async def windows_evtx(request: Request, source: shippers.Source = authenticated_source) -> dict[str, Any]:
    """An EVTX file as the body; its records are matched and stored like shipped events."""
    raw = await _body(request)
    with tempfile.TemporaryDirectory(prefix="vigil-evtx-") as tmp:
        path = Path(tmp) / "upload.evtx"
        path.write_bytes(raw)
        try:
            records = [flatten_evtx(r) for r in read_evtx_records(path)]
        except TriageInputError as e:
            raise APIError(400, "invalid_request", f"not a readable EVTX file: {e.reason}") from None
    events = []
    for flat in records:
        computer = str(flat.get("Computer") or "unknown")
        stamp = str(flat.get("TimeCreated_SystemTime") or flat.get("SystemTime") or "")
        rid = flat.get("EventRecordID")
        try:
            flat["EventID"] = int(str(flat.get("EventID") or 0))
        except (TypeError, ValueError):
            continue
        events.append(winlog.WindowsEvent(flat, stamp, winlog.HostFacts(computer, shipper="evtx upload"),
                                          int(str(rid)) if str(rid).isdigit() else None))
    if not events:
        raise APIError(400, "invalid_request", "the EVTX file holds no events")
    return _ingest(request, source, events, [], hashlib.sha256(raw).hexdigest())
