"""The ingest pipeline: a validated batch is stored atomically, then handed to the detectors."""

from __future__ import annotations

import json
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


def _device_facts(rows: RowsByTable) -> dict[str, Any]:
    """The device record follows the newest DeviceInfo the agent reported."""
    infos = rows.get("DeviceInfo")
    if not infos:
        return {}
    info = max(infos, key=lambda r: r["Timestamp"])
    facts = {
        "computer_dns_name": info.get("DeviceName"),
        "os_platform": info.get("OSPlatform"),
        "os_version": info.get("OSVersion"),
        "os_build": info.get("OSBuild"),
        "agent_version": info.get("ClientVersion"),
    }
    out: dict[str, Any] = {k: v for k, v in facts.items() if v}
    tags = agent_tags(info.get("DeviceTags"))
    if tags is not None:
        out["agent_tags"] = tags
    return out


MAX_TAGS, MAX_TAG_LENGTH = 50, 128


def agent_tags(raw: str | None) -> list[str] | None:
    """The tags in a DeviceInfo row (stored as JSON text); None when the row has none to say.

    Tags outside the limits are dropped, not the batch: the agent's config file is the operator's, and
    a bad tag there must not cost the device its telemetry.
    """
    if raw is None:
        return None
    value = json.loads(raw)
    if not isinstance(value, list):
        return None
    tags = [t.strip() for t in value if isinstance(t, str) and 0 < len(t.strip()) <= MAX_TAG_LENGTH]
    return sorted(set(tags))[:MAX_TAGS]


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
                touch_device(conn, device_id, now, **_device_facts(rows))
        except sa.exc.IntegrityError:
            # A concurrent resend of the same batch won the race; it holds the events.
            return TelemetryAck(batch_id=batch_id, accepted=0, duplicate=True)
        if not stored.duplicate:
            for hook in self.after:
                hook(device_id, rows)
        return TelemetryAck(batch_id=batch_id, accepted=stored.accepted, duplicate=stored.duplicate)
