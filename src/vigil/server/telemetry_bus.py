"""Telemetry batches over the bus: the agent API publishes them, `vigil worker` stores and matches them."""

from __future__ import annotations

import asyncio
import logging
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from vigil.bus import Bus, BusError, BusUnavailable, Delivery, StreamSpec
from vigil.config import Settings
from vigil.core.telemetry import validate_batch
from vigil.server.ingest import IngestPipeline

log = logging.getLogger("vigil.worker")

INGEST_CONSUMER = "ingest"  # the durable name every ingest worker shares: each batch goes to one of them
_FORMAT = 1


class EnvelopeError(ValueError):
    """A message on the telemetry stream that is not a batch this version can read."""


@dataclass(frozen=True)
class BatchEnvelope:
    """What the agent API publishes: the agent's events as sent, and when the server took them.

    The worker validates the events again against ``received`` (the timestamp window of the moment the agent
    sent them), so the rows it stores are those the API's answer counted."""

    device_id: str
    batch_id: str
    received: datetime
    events: list[Any]

    @property
    def msg_id(self) -> str:
        return f"{self.device_id}/{self.batch_id}"  # the store's idempotency key too: (device, batch)

    def encode(self) -> bytes:
        doc = {"v": _FORMAT, "device_id": self.device_id, "batch_id": self.batch_id,
               "received": self.received.isoformat(), "events": self.events}
        return zlib.compress(orjson.dumps(doc), 1)

    @classmethod
    def decode(cls, data: bytes) -> BatchEnvelope:
        try:
            doc = orjson.loads(zlib.decompress(data))
            if doc.get("v") != _FORMAT:
                raise EnvelopeError(f"format {doc.get('v')!r}; this worker reads {_FORMAT}")
            return cls(str(doc["device_id"]), str(doc["batch_id"]), datetime.fromisoformat(doc["received"]),
                       list(doc["events"]))
        except EnvelopeError:
            raise
        except (zlib.error, orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
            raise EnvelopeError(f"unreadable batch message: {type(e).__name__}: {e}") from None


def stream_spec(settings: Settings) -> StreamSpec:
    return StreamSpec(name=settings.bus_stream, subject=f"vigil.{settings.bus_stream.lower()}.batches",
                      max_msgs=settings.bus_max_backlog)


async def connect(settings: Settings) -> Bus:
    from vigil.bus.jetstream import JetStreamBus  # nats-py is imported only where a bus is configured

    return await JetStreamBus.connect(settings.bus_url, stream_spec(settings))


class BusLink:
    """The API process's bus connection, made at the first batch (so the server starts while NATS is away)
    and made again after a failed attempt; a batch arriving meanwhile is answered 503 + Retry-After."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._bus: Bus | None = None
        self._lock: asyncio.Lock | None = None

    async def bus(self) -> Bus:
        if self._bus is not None:
            return self._bus
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._bus is None:
                self._bus = await connect(self.settings)
        return self._bus

    async def close(self) -> None:
        if self._bus is not None:
            await self._bus.close()
            self._bus = None


def store_envelope(pipeline: IngestPipeline, env: BatchEnvelope) -> tuple[int, bool]:
    """Validate and store one published batch (blocking); (rows accepted, whether it was already stored)."""
    checked = validate_batch(env.events, env.device_id, env.received)
    ack = pipeline.ingest(env.device_id, env.batch_id, checked.rows, checked.rejected)
    return ack.accepted, ack.duplicate


@dataclass
class WorkerStats:
    stored: int = 0  # batches stored by this worker
    rows: int = 0  # their rows
    duplicates: int = 0  # redelivered batches the store already held (a worker died between commit and ack)
    failed: int = 0  # attempts that failed to store and were handed back (nak) for another try
    unreadable: int = 0


class IngestWorker:
    """Fetches batches from the shared durable consumer, stores each (with its detections) in one transaction,
    then acks. A crash before the ack makes JetStream deliver the batch again after ``ack_wait``; the store's
    batch ledger turns that second delivery into a duplicate: nothing lost, nothing stored twice."""

    def __init__(self, bus: Bus, pipeline: IngestPipeline, ack_wait: float, fetch_batch: int = 8) -> None:
        self.bus, self.pipeline, self.ack_wait, self.fetch_batch = bus, pipeline, ack_wait, fetch_batch
        self.stats = WorkerStats()
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        consumer = await self.bus.consumer(INGEST_CONSUMER, ack_wait=self.ack_wait)
        while not self._stop.is_set():
            try:
                deliveries = await consumer.fetch(self.fetch_batch, timeout=1.0)
            except BusUnavailable as e:
                log.warning("cannot fetch batches: %s; trying again in 1 s", e)
                await asyncio.sleep(1.0)
                continue
            for d in deliveries:
                await self._handle(d)

    async def _handle(self, d: Delivery) -> None:
        try:
            env = BatchEnvelope.decode(d.data)
        except EnvelopeError as e:
            # It would fail on every worker forever: set it aside loudly rather than block the stream.
            self.stats.unreadable += 1
            log.error("message %s dropped from the telemetry stream: %s", d.msg_id, e)
            await self._settle(d.ack)
            return
        try:
            rows, duplicate = await asyncio.to_thread(store_envelope, self.pipeline, env)
        except Exception as e:
            self.stats.failed += 1
            log.error("batch %s of device %s not stored (attempt %d): %s: %s; handed back", env.batch_id,
                      env.device_id, d.attempt, type(e).__name__, str(e).splitlines()[0][:300] if str(e) else "")
            await self._settle(d.nak, min(30.0, 0.5 * d.attempt))
            return
        if duplicate:
            self.stats.duplicates += 1
            log.info("batch %s of device %s was already stored (delivery %d)", env.batch_id, env.device_id,
                     d.attempt)
        else:
            self.stats.stored += 1
            self.stats.rows += rows
        await self._settle(d.ack)

    @staticmethod
    async def _settle(step: Any, *args: float) -> None:
        try:
            await step(*args)
        except BusError as e:  # the batch comes back after ack_wait; the store's ledger makes that harmless
            log.warning("could not settle a message with the bus: %s", e)
