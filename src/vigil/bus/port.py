"""The bus port: publish with de-duplication by message id, durable consumers with explicit acks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class BusError(Exception):
    """The bus refused or lost an operation; ``retry_after`` is when trying again makes sense (seconds)."""

    retry_after: float = 5.0


class BusUnavailable(BusError):
    """The bus did not confirm the message: down, unreachable or too slow. Nothing may be assumed stored."""


class BusFull(BusError):
    """The stream holds its limit of unconsumed messages (or bytes): the consumers are behind."""


class PayloadTooLarge(BusError):
    """The message is over the bus's largest payload."""


@dataclass(frozen=True)
class StreamSpec:
    """One durable stream: its name, the subjects it keeps, and the backlog that turns into back-pressure.

    Acknowledged messages leave the stream (a work queue), so ``max_msgs`` and ``max_bytes`` bound what is
    published and not yet consumed; a message id seen within ``duplicate_window`` seconds is taken once.
    """

    name: str
    subject: str
    max_msgs: int = 200_000
    max_bytes: int = 2 * 1024**3
    duplicate_window: float = 600.0


@dataclass(frozen=True)
class Published:
    """The bus holds the message (durably, for JetStream); ``duplicate`` when its id was already taken."""

    sequence: int
    duplicate: bool


class Delivery(Protocol):
    """A message handed to one consumer; until it is acked it comes back after the consumer's ``ack_wait``."""

    @property
    def msg_id(self) -> str: ...

    @property
    def data(self) -> bytes: ...

    @property
    def attempt(self) -> int:
        """1 on the first delivery, 2 on the first redelivery, ..."""
        ...

    async def ack(self) -> None:
        """Done: the message leaves the stream."""
        ...

    async def nak(self, delay: float = 0.0) -> None:
        """Not done: deliver it again (to any consumer sharing the durable name) after ``delay`` seconds."""
        ...


class Consumer(Protocol):
    async def fetch(self, batch: int, timeout: float) -> list[Delivery]:
        """Up to ``batch`` messages, waiting at most ``timeout`` seconds for the first; [] when none came."""
        ...


class Bus(Protocol):
    stream: StreamSpec

    async def publish(self, data: bytes, msg_id: str) -> Published:
        """Put ``data`` on the stream's subject once per ``msg_id``; returns only when the bus holds it.

        Raises `BusUnavailable`, `BusFull` or `PayloadTooLarge`."""
        ...

    async def consumer(self, durable: str, ack_wait: float = 30.0, max_ack_pending: int = 1_000) -> Consumer:
        """A consumer by durable name: every process asking for the same name shares its messages (each to one)."""
        ...

    async def close(self) -> None: ...
