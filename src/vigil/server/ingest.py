"""The ingest pipeline: a validated batch and the alerts its events raise are stored in one transaction."""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import sqlalchemy as sa

from vigil.core.clock import Clock
from vigil.core.telemetry import RejectedRow
from vigil.store.alerts import NewHit, record_hit
from vigil.store.errors import DuplicateBatch
from vigil.store.export import any_enabled, write_outbox
from vigil.store.identity import report_device
from vigil.store.telemetry import batch_transaction, insert_rows, store_batch
from vigil.wire import MAX_LISTED_REJECTIONS, TelemetryAck
from vigil.wire import RejectedRow as RejectedRowInfo

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


REJECTED_ACTION = "TelemetryRowsRejected"
_DESCRIBED_IN_EVENT = 10  # rejected rows described in the DeviceEvents row; all are counted


class RejectedRows:
    """Rows refused by validation since the server started, by table ("unknown" when the row named none)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_table: Counter[str] = Counter()

    def add(self, rejected: Sequence[RejectedRow]) -> None:
        with self._lock:
            self._by_table.update(r.table or "unknown" for r in rejected)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._by_table)


def rejection_event(device_id: str, batch_id: str, rows: RowsByTable, rejected: Sequence[RejectedRow],
                    now: Any) -> dict[str, Any]:
    """The DeviceEvents row the server stores for a batch it stored in part, so the gap shows on the device."""
    names = [r["DeviceName"] for table_rows in rows.values() for r in table_rows if r.get("DeviceName")]
    details = {
        "BatchId": batch_id,
        "AcceptedRows": sum(map(len, rows.values())),
        "RejectedRows": len(rejected),
        "RejectedByTable": dict(Counter(r.table or "unknown" for r in rejected)),
        "Rejections": [{"Index": r.index, "Table": r.table, "Field": r.field, "Reason": r.reason}
                       for r in rejected[:_DESCRIBED_IN_EVENT]],
    }
    return {
        "Timestamp": now, "DeviceId": device_id, "DeviceName": names[-1] if names else None,
        "ActionType": REJECTED_ACTION, "ReportId": 0,  # 0: made by the server, not from the agent's spool
        "AdditionalFields": json.dumps(details, separators=(",", ":")),
    }


def rejection_summary(rejected: Sequence[RejectedRow]) -> list[RejectedRowInfo]:
    return [RejectedRowInfo(index=r.index, table=r.table, field=r.field, reason=r.reason)
            for r in rejected[:MAX_LISTED_REJECTIONS]]


class IngestPipeline:
    """Stores a batch and records its detections atomically: a crash between the two can lose neither,
    because an unacknowledged batch is resent by the agent and matched again."""

    def __init__(self, engine: sa.Engine, clock: Clock, detector: Detector | None = None) -> None:
        self.engine = engine
        self.clock = clock
        self.detector = detector
        self.rejected_rows = RejectedRows()
        # Called with (device_id, rows) after a new batch is committed (TVM applies software inventories there);
        # one failing must not cost the agent its acknowledgement: the batch is stored.
        self.after_store: list[Callable[[str, RowsByTable], object]] = []

    def ingest(self, device_id: str, batch_id: str, rows: RowsByTable,
               rejected: Sequence[RejectedRow] = (), hits: Sequence[NewHit] | None = None) -> TelemetryAck:
        """Store the batch's valid ``rows``; ``rejected`` (its invalid rows) is reported in the ack, counted
        and recorded as one DeviceEvents row, the first time the batch is stored. ``hits``, when given, are
        what the batch raised, matched by the caller (shipped Windows events are matched as Windows events)."""
        now = self.clock.now()
        found: list[NewHit] = list(hits or ())
        if self.detector is not None and hits is None:
            try:  # matched before the transaction, so the database is not held while rules run
                found = self.detector.hits(device_id, rows)
            except Exception:  # a detection bug must not cost the telemetry: store the batch without it
                log.exception("detection failed on batch %s of device %s; stored without detection",
                              batch_id, device_id)
        try:
            with batch_transaction(self.engine, device_id, batch_id) as conn:
                stored = store_batch(conn, device_id, batch_id, rows, now)
                report_device(conn, device_id, now, _device_facts(rows))  # name, OS, tags: held for review
                if not stored.duplicate:
                    opened = [aid for aid, new in (record_hit(conn, hit, now) for hit in found) if new]
                    if any_enabled(conn):  # streaming export: in this transaction, so stored means exported
                        write_outbox(conn, rows, opened, now)
                    if rejected:
                        insert_rows(conn, "DeviceEvents", [rejection_event(device_id, batch_id, rows, rejected, now)])
        except DuplicateBatch:  # a concurrent resend of the same batch won the race and holds the events
            return TelemetryAck(batch_id=batch_id, accepted=0, duplicate=True, rejected=len(rejected),
                                rejections=rejection_summary(rejected))
        if not stored.duplicate:
            for hook in self.after_store:
                try:
                    hook(device_id, rows)
                except Exception:
                    log.exception("post-ingest step %s failed on batch %s of device %s", getattr(hook, "__qualname__",
                                  hook), batch_id, device_id)
        if rejected and not stored.duplicate:
            self.rejected_rows.add(rejected)
            first = rejected[0]
            log.warning("batch %s of device %s: stored %d rows, rejected %d invalid ones (first: %s: %s)",
                        batch_id, device_id, stored.accepted, len(rejected), first.where, first.reason)
        return TelemetryAck(batch_id=batch_id, accepted=stored.accepted, duplicate=stored.duplicate,
                            rejected=len(rejected), rejections=rejection_summary(rejected))
