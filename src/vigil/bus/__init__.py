"""Vigil's event bus: a small port (`Bus`, `Consumer`, `Delivery`) and its adapters.

- `vigil.bus.memory.InProcessBus` — one process, one event loop; the port's fake and the embedded default's bus.
- `vigil.bus.jetstream.JetStreamBus` — NATS JetStream (`nats-py`): a file-backed work-queue stream, de-duplication
  by message id (`Nats-Msg-Id`), pull consumers shared by any number of workers, explicit acks.

Errors (`vigil.bus.port`)::

    BusError
     ├── BusUnavailable   the bus did not take the message (down, timed out): try again later
     ├── BusFull          the stream holds its limit of unconsumed messages: back-pressure, try again later
     └── PayloadTooLarge  the message is over the bus's size limit: it will never fit
"""

from vigil.bus.port import (
    Bus,
    BusError,
    BusFull,
    BusUnavailable,
    Consumer,
    Delivery,
    PayloadTooLarge,
    Published,
    StreamSpec,
)

__all__ = [
    "Bus", "BusError", "BusFull", "BusUnavailable", "Consumer", "Delivery", "PayloadTooLarge", "Published",
    "StreamSpec",
]
