"""The NATS JetStream adapter: a file-backed work-queue stream, `Nats-Msg-Id` de-duplication, pull consumers."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from vigil.bus.port import BusFull, BusUnavailable, Consumer, Delivery, PayloadTooLarge, Published, StreamSpec

log = logging.getLogger("vigil.bus")

_MSG_ID = "Nats-Msg-Id"
_LIMIT_CODES = {10077, 10047, 10027, 10028}  # maximum messages / bytes / resources exceeded: the stream is full


@dataclass
class _JsDelivery:
    msg: Msg

    @property
    def msg_id(self) -> str:
        return (self.msg.headers or {}).get(_MSG_ID, "")

    @property
    def data(self) -> bytes:
        return self.msg.data

    @property
    def attempt(self) -> int:
        return int(self.msg.metadata.num_delivered)

    async def ack(self) -> None:
        try:
            await self.msg.ack_sync(timeout=5)
        except (nats.errors.Error, TimeoutError) as e:  # not confirmed: the message will come back, and be a duplicate
            raise BusUnavailable(f"ack not confirmed: {e}") from None

    async def nak(self, delay: float = 0.0) -> None:
        try:
            await self.msg.nak(delay=delay or None)
        except nats.errors.Error as e:
            raise BusUnavailable(f"nak not sent: {e}") from None


@dataclass
class _JsConsumer:
    sub: JetStreamContext.PullSubscription

    async def fetch(self, batch: int, timeout: float) -> list[Delivery]:
        try:
            msgs = await self.sub.fetch(batch, timeout=timeout)
        except nats.errors.TimeoutError:
            return []
        except (nats.errors.Error, nats.js.errors.Error) as e:
            raise BusUnavailable(f"fetch failed: {e}") from None
        return [_JsDelivery(m) for m in msgs]


class JetStreamBus:
    """One NATS connection (reconnecting by itself) and the stream it ensures at connect."""

    def __init__(self, nc: Client, js: JetStreamContext, stream: StreamSpec, publish_timeout: float) -> None:
        self.nc, self.js, self.stream, self.publish_timeout = nc, js, stream, publish_timeout

    @classmethod
    async def connect(cls, url: str, stream: StreamSpec, publish_timeout: float = 5.0,
                      connect_timeout: float = 3.0) -> JetStreamBus:
        """Connect to ``url`` (nats://host:port, several comma-separated) and create or update the stream."""
        async def disconnected() -> None:
            log.warning("NATS connection lost; reconnecting (publishes answer 503 until then)")

        async def reconnected() -> None:
            log.warning("NATS connection back")

        async def error(e: Exception) -> None:
            log.warning("NATS: %s", e)

        try:  # reconnects forever once connected; the first connect (which the same option makes endless) is bounded
            nc = await asyncio.wait_for(nats.connect(
                servers=[u.strip() for u in url.split(",") if u.strip()], connect_timeout=connect_timeout,
                allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                disconnected_cb=disconnected, reconnected_cb=reconnected, error_cb=error,
            ), timeout=connect_timeout)
        except (nats.errors.Error, OSError, TimeoutError) as e:
            raise BusUnavailable(f"cannot connect to NATS at {url}: {type(e).__name__} {e}".rstrip()) from None
        js = nc.jetstream(timeout=publish_timeout)
        config = StreamConfig(
            name=stream.name, subjects=[stream.subject], retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE, discard=DiscardPolicy.NEW, max_msgs=stream.max_msgs,
            max_bytes=stream.max_bytes, duplicate_window=stream.duplicate_window,
        )
        try:
            try:
                await js.stream_info(stream.name)
                await js.update_stream(config)
            except nats.js.errors.NotFoundError:
                await js.add_stream(config)
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as e:
            await nc.close()
            raise BusUnavailable(f"cannot create stream {stream.name} on {url}: {e}") from None
        return cls(nc, js, stream, publish_timeout)

    async def publish(self, data: bytes, msg_id: str) -> Published:
        if len(data) > self.nc.max_payload:
            raise PayloadTooLarge(f"{len(data)} bytes; NATS takes at most {self.nc.max_payload}")
        try:
            ack = await self.js.publish(self.stream.subject, data, timeout=self.publish_timeout,
                                        headers={_MSG_ID: msg_id})
        except nats.js.errors.APIError as e:
            if e.err_code in _LIMIT_CODES:
                raise BusFull(f"stream {self.stream.name}: {e.description}") from None
            raise BusUnavailable(f"JetStream refused the message: {e.description}") from None
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as e:
            raise BusUnavailable(f"JetStream did not confirm the message: {type(e).__name__}") from None
        return Published(int(ack.seq), duplicate=bool(ack.duplicate))

    async def consumer(self, durable: str, ack_wait: float = 30.0, max_ack_pending: int = 1_000) -> Consumer:
        config = ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT, ack_wait=ack_wait,
                                max_ack_pending=max_ack_pending, max_deliver=-1)
        try:
            sub = await self.js.pull_subscribe(self.stream.subject, durable=durable, stream=self.stream.name,
                                               config=config)
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as e:
            raise BusUnavailable(f"cannot attach consumer {durable} to {self.stream.name}: {e}") from None
        return _JsConsumer(sub)

    async def backlog(self) -> int:
        """Messages in the stream not yet acked."""
        info = await self.js.stream_info(self.stream.name)
        return int(info.state.messages)

    async def close(self) -> None:
        # Not drain(): it waits out any pull request still open on the server (up to 30 s). Every publish was
        # confirmed and every ack sent before close is called, so nothing buffered is worth waiting for.
        if not self.nc.is_closed:
            await self.nc.close()
