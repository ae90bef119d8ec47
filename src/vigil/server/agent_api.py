"""The agent API: enrollment, telemetry ingest and heartbeats, under /agent/v1."""

from __future__ import annotations

import logging
import zlib
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from vigil.app import asr as asr_service
from vigil.bus import BusFull, BusUnavailable, PayloadTooLarge
from vigil.core.telemetry import ValidatedBatch, validate_batch
from vigil.server import app_edge as edge
from vigil.server.agent_actions import pending_commands
from vigil.server.auth import authenticated_device, client_ip, public, services
from vigil.server.errors import APIError
from vigil.server.ingest import rejection_summary
from vigil.server.telemetry_bus import BatchEnvelope, BusLink
from vigil.store import devices as device_store
from vigil.wire import (
    ENROLL_PATH,
    HEARTBEAT_PATH,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    TELEMETRY_PATH,
    EnrollRequest,
    EnrollResponse,
    Heartbeat,
    HeartbeatResponse,
    TelemetryAck,
)

router = APIRouter(tags=["agent"])
log = logging.getLogger("vigil.ingest")


def _client_ip(request: Request) -> str:
    return client_ip(request) or "unknown"


@router.post(ENROLL_PATH, response_model=EnrollResponse)
def enroll(body: EnrollRequest, request: Request, _: None = public()) -> EnrollResponse:
    """Authenticated by the enrollment token in the body, so no caller identity is required."""
    svc = services(request)
    ip = _client_ip(request)
    if not svc.enroll_limiter.allow(ip):
        raise APIError(429, "rate_limited", "too many enrollment attempts; wait a minute",
                       headers={"Retry-After": "60"})
    now = svc.clock.now()
    try:
        with svc.engine.begin() as conn:
            token_id, group_id = device_store.redeem_token(conn, body.token, now)
            device_id, credential = device_store.register_device(
                conn, token_id=token_id, group_id=group_id, hostname=body.hostname,
                os_platform=body.os_platform, os_version=body.os_version,
                agent_version=body.agent_version, machine_id=body.machine_id, ip=ip, now=now,
            )
    except device_store.EnrollmentRefused as e:
        raise APIError(401, "enrollment_refused", e.reason, field="token") from None
    queue_current_protection(request, [device_id])
    return EnrollResponse(device_id=device_id, credential=credential)


def queue_current_protection(request: Request, device_ids: list[str]) -> None:
    """Queue the protection bundle in force for devices that just enrolled or changed group: ASR policy and
    indicator changes are pushed to the devices of the groups they reach at the time, so a device enrolling or
    moving later would otherwise run with none (or its old group's) until the next change."""
    if not device_ids:
        return
    svc = services(request)
    try:
        with edge.store(request).begin() as uow:
            asr_service.deliver_to_new_devices(uow, svc.clock.now(), device_ids)
    except Exception as e:  # the enrolment or group change stands either way; a lost bundle must not undo it
        log.error("protection bundle for devices %s not queued: %s", device_ids[:5], _one_line(e))


async def _read_body(request: Request) -> bytes:
    """The request body, decompressed, refusing anything past MAX_BATCH_BYTES (zip bombs too)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BATCH_BYTES:
        raise APIError(413, "batch_too_large", f"body over {MAX_BATCH_BYTES} bytes")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BATCH_BYTES:
            raise APIError(413, "batch_too_large", f"body over {MAX_BATCH_BYTES} bytes")
    encoding = request.headers.get("content-encoding", "identity").lower()
    if encoding == "identity":
        return bytes(raw)
    if encoding != "gzip":
        raise APIError(415, "unsupported_encoding", f"content-encoding {encoding!r}; use gzip or none")
    d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(bytes(raw), MAX_BATCH_BYTES + 1)
    except zlib.error as e:
        raise APIError(400, "bad_encoding", f"body is not valid gzip: {e}") from None
    if len(out) > MAX_BATCH_BYTES or d.unconsumed_tail:
        raise APIError(413, "batch_too_large", f"decompressed body over {MAX_BATCH_BYTES} bytes")
    return out


def _parse_batch(body: bytes) -> tuple[str, list[Any]]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise APIError(400, "malformed_json", f"body is not valid JSON: {e}") from None
    if not isinstance(doc, dict):
        raise APIError(422, "invalid_batch", "batch must be a JSON object")
    unknown = set(doc) - {"batch_id", "events"}
    if unknown:
        raise APIError(422, "invalid_batch", f"unknown key {sorted(unknown)[0]!r}", field=sorted(unknown)[0])
    batch_id, events = doc.get("batch_id"), doc.get("events")
    if not isinstance(batch_id, str) or not 8 <= len(batch_id) <= 64:
        raise APIError(422, "invalid_batch", "batch_id must be a string of 8 to 64 characters", field="batch_id")
    if not batch_id.isprintable():  # NUL and control characters: PostgreSQL text refuses NUL (was a 503)
        raise APIError(422, "invalid_batch", "batch_id must be printable characters", field="batch_id")
    if not isinstance(events, list):
        raise APIError(422, "invalid_batch", "events must be a list", field="events")
    if len(events) > MAX_BATCH_EVENTS:
        raise APIError(413, "batch_too_large", f"{len(events)} events; at most {MAX_BATCH_EVENTS} per batch",
                       field="events")
    return batch_id, events


# The body as the agent sends it (gzip or plain JSON), so schemathesis and readers of the schema see its shape.
_BATCH_SCHEMA = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "additionalProperties": False, "required": ["batch_id", "events"],
        "properties": {
            "batch_id": {"type": "string", "minLength": 8, "maxLength": 64},
            "events": {"type": "array", "maxItems": MAX_BATCH_EVENTS, "items": {
                "type": "object", "required": ["table"], "properties": {"table": {"type": "string"}},
                "description": "a row of the named telemetry table (docs/telemetry-schema.md)",
            }},
        },
    }}}},
}


def _one_line(e: BaseException) -> str:
    # SQLAlchemy's messages carry the statement and parameters on later lines: the first is the cause.
    return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}"


@router.post(TELEMETRY_PATH, response_model=TelemetryAck, openapi_extra=_BATCH_SCHEMA)
async def telemetry(request: Request, device_id: str = authenticated_device) -> TelemetryAck:
    """Store a batch's valid rows and name the invalid ones in the ack.

    What depends on the body alone is answered 4xx, so the agent sets the batch aside instead of
    resending it; only a failure to store (the database, the server) is answered 5xx, so it resends.
    """
    svc = services(request)
    batch_id, events = _parse_batch(await _read_body(request))
    received = svc.clock.now()
    try:
        checked = validate_batch(events, device_id, received)
    except Exception as e:  # a validator bug: the same body would fail again, so not a 5xx to be resent forever
        log.error("batch %s of device %s could not be validated: %s", batch_id, device_id, _one_line(e))
        log.debug("validation failure of batch %s", batch_id, exc_info=True)
        raise APIError(422, "invalid_batch", f"the server could not validate this batch ({type(e).__name__})",
                       field="events") from None
    if checked.rejected and not checked.rows:
        svc.ingest.rejected_rows.add(checked.rejected)
        first = checked.rejected[0]
        log.warning("batch %s of device %s refused: all %d rows invalid (first: %s: %s)",
                    batch_id, device_id, len(checked.rejected), first.where, first.reason)
        raise APIError(422, "invalid_batch", f"{first.where}: {first.reason}", field=first.where)
    if svc.bus is not None:
        published = await _publish(svc.bus, BatchEnvelope(device_id, batch_id, received, events), checked)
        if published is not None:
            return published
    try:
        # Storing is blocking I/O; keep it off the event loop.
        return await run_in_threadpool(svc.ingest.ingest, device_id, batch_id, checked.rows, checked.rejected)
    except Exception as e:
        log.error("batch %s of device %s could not be stored: %s", batch_id, device_id, _one_line(e))
        log.debug("storage failure of batch %s", batch_id, exc_info=True)
        raise APIError(503, "ingest_failed", "the server could not store this batch; send it again later") from None


async def _publish(link: BusLink, envelope: BatchEnvelope, checked: ValidatedBatch) -> TelemetryAck | None:
    """Hand the batch to the bus; the agent is answered only once JetStream holds it (then it deletes the batch).

    None when the batch is over the bus's payload limit: the caller stores it in the request, as without a bus.
    """
    try:
        bus = await link.bus()
        published = await bus.publish(envelope.encode(), envelope.msg_id)
    except BusFull as e:  # the workers are behind: the agent keeps the batch in its spool and comes back
        log.warning("batch %s of device %s refused: %s", envelope.batch_id, envelope.device_id, e)
        raise APIError(429, "ingest_busy", "the server is behind on storing telemetry; send this batch again later",
                       headers={"Retry-After": _BUSY_RETRY}) from None
    except BusUnavailable as e:
        log.error("batch %s of device %s not published: %s", envelope.batch_id, envelope.device_id, e)
        raise APIError(503, "ingest_failed", "the server could not store this batch; send it again later",
                       headers={"Retry-After": _DOWN_RETRY}) from None
    except PayloadTooLarge as e:
        log.info("batch %s of device %s stored in the request: %s", envelope.batch_id, envelope.device_id, e)
        return None
    rows = sum(map(len, checked.rows.values()))
    return TelemetryAck(batch_id=envelope.batch_id, accepted=rows, duplicate=published.duplicate,
                        rejected=len(checked.rejected), rejections=rejection_summary(checked.rejected))


_BUSY_RETRY, _DOWN_RETRY = "5", "10"  # seconds; the agent's uploader honours Retry-After


@router.post(HEARTBEAT_PATH, response_model=HeartbeatResponse)
def heartbeat(body: Heartbeat, request: Request, device_id: str = authenticated_device) -> HeartbeatResponse:
    svc = services(request)
    now = svc.clock.now()
    ips = [ip for ip in body.ip_addresses if not ip.startswith("127.") and ip != "::1"]
    with svc.engine.begin() as conn:
        device_store.touch_device(
            conn, device_id, now, agent_version=body.agent_version,
            counters=body.counters.model_dump(), sensors=body.sensors,
            last_ip=(ips[0] if ips else _client_ip(request)), last_external_ip=_client_ip(request),
        )
    return HeartbeatResponse(server_time=now, commands=pending_commands(request, device_id))
