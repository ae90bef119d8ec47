"""The ingest pipeline: a validated batch is stored atomically, then handed to the detectors."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from vigil.core.clock import Clock
from vigil.store.devices import touch_device
from vigil.store.telemetry import store_batch
from vigil.wire import TelemetryAck

log = logging.getLogger("vigil.ingest")

RowsByTable = dict[str, list[dict[str, Any]]]
AfterIngest = Callable[[str, RowsByTable], None]


class IngestPipeline:
    def __init__(self, engine: sa.Engine, clock: Clock, after: list[AfterIngest] | None = None) -> None:
        self.engine = engine
        self.clock = clock
        self.after = after or []

    def ingest(self, device_id: str, batch_id: str, rows: RowsByTable) -> TelemetryAck:
        now = self.clock.now()
        try:
            with self.engine.begin() as conn:
                stored = store_batch(conn, device_id, batch_id, rows, now)
                touch_device(conn, device_id, now)
        except sa.exc.IntegrityError:
            # A concurrent resend of the same batch won the race; it holds the events.
            return TelemetryAck(batch_id=batch_id, accepted=0, duplicate=True)
        if not stored.duplicate:
            for hook in self.after:
                hook(device_id, rows)
        return TelemetryAck(batch_id=batch_id, accepted=stored.accepted, duplicate=stored.duplicate)
