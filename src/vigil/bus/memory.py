"""The in-process bus: the port's semantics (dedup window, work queue, ack deadlines) in one event loop's memory."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from vigil.bus.port import BusFull, BusUnavailable, Consumer, Delivery, PayloadTooLarge, Published, StreamSpec


@dataclass
class _Entry:
    sequence: int
    msg_id: str
    data: bytes
    deliveries: int = 0
    owner: str | None = None  # the durable consumer holding it, until acked or its ack deadline
    deadline: float = 0.0
    not_before: float = 0.0  # a nak with a delay


@dataclass
class _InDelivery:
    bus: InProcessBus
    entry: _Entry
    durable: str
    attempt: int
    _done: bool = field(default=False)

    @property
    def msg_id(self) -> str:
        return self.entry.msg_id

    @property
    def data(self) -> bytes:
        return self.entry.data

    async def ack(self) -> None:
        if not self._done and self.entry.owner == self.durable and self.entry.deliveries == self.attempt:
            self.bus._remove(self.entry)
        self._done = True

    async def nak(self, delay: float = 0.0) -> None:
        if not self._done and self.entry.owner == self.durable and self.entry.deliveries == self.attempt:
            self.entry.deadline = 0.0
            self.entry.not_before = self.bus._now() + delay
            self.bus._wake()
        self._done = True


@dataclass
class _InConsumer:
    bus: InProcessBus
    durable: str
    ack_wait: float
    max_ack_pending: int

    async def fetch(self, batch: int, timeout: float) -> list[Delivery]:
        end = self.bus._now() + timeout
        while True:
            if self.bus._closed:
                raise BusUnavailable("the in-process bus is closed")
            got = self.bus._take(self, batch)
            if got:
                return got
            left = end - self.bus._now()
            if left <= 0:
                return []
            with contextlib.suppress(TimeoutError):  # woken by a publish or a nak; ack deadlines re-checked every 50 ms
                await asyncio.wait_for(self.bus._event.wait(), min(left, 0.05))


class InProcessBus:
    """Messages in a dict, kept until acked; the same limits and errors as JetStream, nothing on disk."""

    def __init__(self, stream: StreamSpec, max_payload: int = 1024 * 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.max_payload = max_payload
        self._now = clock
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._bytes = 0
        self._seen: OrderedDict[str, tuple[float, int]] = OrderedDict()  # msg id -> (time, sequence)
        self._sequence = 0
        self._event = asyncio.Event()
        self._closed = False

    async def publish(self, data: bytes, msg_id: str) -> Published:
        if self._closed:
            raise BusUnavailable("the in-process bus is closed")
        if len(data) > self.max_payload:
            raise PayloadTooLarge(f"{len(data)} bytes; the bus takes at most {self.max_payload}")
        now = self._now()
        while self._seen and next(iter(self._seen.values()))[0] < now - self.stream.duplicate_window:
            self._seen.popitem(last=False)
        if msg_id in self._seen:
            return Published(self._seen[msg_id][1], duplicate=True)
        if len(self._entries) >= self.stream.max_msgs or self._bytes + len(data) > self.stream.max_bytes:
            raise BusFull(f"stream {self.stream.name} holds {len(self._entries)} unconsumed messages")
        self._sequence += 1
        self._entries[self._sequence] = _Entry(self._sequence, msg_id, data)
        self._bytes += len(data)
        self._seen[msg_id] = (now, self._sequence)
        self._wake()
        return Published(self._sequence, duplicate=False)

    async def consumer(self, durable: str, ack_wait: float = 30.0, max_ack_pending: int = 1_000) -> Consumer:
        return _InConsumer(self, durable, ack_wait, max_ack_pending)

    async def close(self) -> None:
        self._closed = True
        self._wake()

    def backlog(self) -> int:
        return len(self._entries)

    def _wake(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    def _remove(self, entry: _Entry) -> None:
        if self._entries.pop(entry.sequence, None) is not None:
            self._bytes -= len(entry.data)

    def _take(self, consumer: _InConsumer, batch: int) -> list[Delivery]:
        now = self._now()
        held = sum(1 for e in self._entries.values() if e.owner == consumer.durable and e.deadline > now)
        room = min(batch, consumer.max_ack_pending - held)
        out: list[Delivery] = []
        for entry in self._entries.values():
            if len(out) >= room:
                break
            if entry.deadline > now or entry.not_before > now:
                continue  # held by a consumer still within its ack deadline, or naked with a delay
            entry.deliveries += 1
            entry.owner, entry.deadline = consumer.durable, now + consumer.ack_wait
            out.append(_InDelivery(self, entry, consumer.durable, entry.deliveries))
        return out
