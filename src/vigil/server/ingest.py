"""The ingest pipeline: a validated batch and the alerts its events raise are stored in one transaction."""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

import sqlalchemy as sa

from vigil.core.clock import Clock
from vigil.store.alerts import NewHit, record_hit
from vigil.store.devices import touch_device
from vigil.store.telemetry import store_batch, stored_batch
from vigil.wire import TelemetryAck

log = logging.getLogger("vigil.ingest")

RowsByTable = dict[str, list[dict[str, Any]]]


class Detector(Protocol):
    def hits(self, device_id: str, rows: RowsByTable) -> list[NewHit]:
        """What the batch's events raise; pure matching, no I/O."""
        ...


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
    """Stores a batch and records its detections atomically: a crash between the two can lose neither,
    because an unacknowledged batch is resent by the agent and matched again."""

    def __init__(self, engine: sa.Engine, clock: Clock, detector: Detector | None = None) -> None:
        self.engine = engine
        self.clock = clock
        self.detector = detector

    def ingest(self, device_id: str, batch_id: str, rows: RowsByTable) -> TelemetryAck:
        now = self.clock.now()
        hits: list[NewHit] = []
        if self.detector is not None:
            try:  # matched before the transaction, so the database is not held while rules run
                hits = self.detector.hits(device_id, rows)
            except Exception:  # a detection bug must not cost the telemetry: store the batch without it
                log.exception("detection failed on batch %s of device %s; stored without detection",
                              batch_id, device_id)
        try:
            with self.engine.begin() as conn:
                stored = store_batch(conn, device_id, batch_id, rows, now)
                touch_device(conn, device_id, now, **_device_facts(rows))
                if not stored.duplicate:
                    for hit in hits:
                        record_hit(conn, hit, now)
        except sa.exc.IntegrityError:
            # A concurrent resend of the same batch won the race and holds the events; any other
            # constraint failure is an error the agent must see, so it keeps the batch and resends it.
            with self.engine.connect() as conn:
                if stored_batch(conn, device_id, batch_id) is None:
                    raise
            return TelemetryAck(batch_id=batch_id, accepted=0, duplicate=True)
        return TelemetryAck(batch_id=batch_id, accepted=stored.accepted, duplicate=stored.duplicate)
