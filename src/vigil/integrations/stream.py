"""The stream worker: one thread per enabled destination, sending the outbox in order from its durable cursor.

At least once: the cursor moves only after the exporter returns, in its own transaction, so a crash or a restart
between the send and the move resends that batch with the same record ids (the receiver's dedup key). A failing
receiver is retried with exponential back-off, never skipped; the outbox keeps what it has not delivered.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from vigil.core.clock import Clock
from vigil.integrations import exporters
from vigil.integrations.records import ALERTS, Record, alert_properties
from vigil.store import export as store

log = logging.getLogger("vigil.integrations")


def records_of(rows: Sequence[store.OutboxRow], tables: frozenset[str],
               alerts: Mapping[str, Mapping[str, Any]]) -> list[Record]:
    """The destination's records from outbox rows; ids count every record of a row, chosen or not, so they hold."""
    out = []
    for row in rows:
        for i, (table, props) in enumerate(row.records):
            if table not in tables:
                continue
            if table == ALERTS:
                alert = alerts.get(props["id"])
                if alert is None:  # deleted since; nothing to say about it
                    continue
                props = alert_properties(alert)
            out.append(Record(f"{row.seq}.{i}", table, str(props.get("Timestamp") or ""), props))
    return out


class Catalogue:
    """The exporters' registry as ``vigil.app.streaming`` needs it."""

    def kinds(self) -> Sequence[str]:
        return exporters.EXPORTERS.names()

    def check(self, kind: str, settings: Mapping[str, Any]) -> None:
        exporters.check_settings(kind, settings)

    def secret_fields(self, kind: str) -> Sequence[str]:
        return exporters.secret_fields(kind)


class DestinationLoop:
    def __init__(self, worker: StreamWorker, dest_id: int) -> None:
        self.worker, self.dest_id = worker, dest_id
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"vigil-stream-{dest_id}", daemon=True)
        self._exporter: exporters.Exporter | None = None
        self._built_from: tuple[str, str] | None = None

    def _exporter_for(self, kind: str, settings: Mapping[str, Any]) -> exporters.Exporter:
        key = (kind, repr(sorted(settings.items())))
        if self._exporter is None or self._built_from != key:
            if self._exporter is not None:
                self._exporter.close()
            self._exporter = exporters.build(kind, settings, self.worker.ctx)
            self._built_from = key
        return self._exporter

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                wait = self.step()
            except Exception:  # a bug must not end delivery for good: log it, retry after a pause
                log.exception("streaming destination %s: step failed", self.dest_id)
                wait = 5.0
            if wait:
                self.stop.wait(wait)
        if self._exporter is not None:
            self._exporter.close()

    def step(self) -> float:
        """Send one batch if one is due; returns how long to wait before the next step."""
        w = self.worker
        now = w.clock.now()
        with w.engine.connect() as conn:
            d = store.SqlDestinations(conn).get(self.dest_id)
            if d is None or not d.enabled:
                self.stop.set()
                return 0
            if d.next_attempt_at is not None and d.next_attempt_at > now:
                return float(min(w.poll, (d.next_attempt_at - now).total_seconds()))
            rows = store.pending(conn, d.cursor, w.batch_records, now)
            if not rows:
                return w.poll
            chosen = frozenset(d.tables)
            alert_ids = [p["id"] for r in rows for t, p in r.records if t == ALERTS and ALERTS in chosen]
            records = records_of(rows, chosen, store.alert_rows(conn, alert_ids))
        last = rows[-1].seq
        if records:
            try:
                self._exporter_for(d.kind, d.settings).send(records)
            except (exporters.ExportFailed, exporters.BadSettings) as e:
                delay = float(min(w.max_backoff, w.base_backoff * 2.0 ** d.attempts))
                with w.engine.begin() as conn:
                    store.failed(conn, d.id, len(records), str(e), now, now + timedelta(seconds=delay))
                log.warning("streaming destination %s (%s): %s; retry in %.1fs", d.name, d.kind, e, delay)
                return min(w.poll, delay)
        with w.engine.begin() as conn:
            store.delivered(conn, d.id, last, len(records), w.clock.now())
        return 0


class StreamWorker:
    """Starts a loop for each enabled destination, stops those disabled or deleted, prunes the outbox."""

    def __init__(self, engine: sa.Engine, clock: Clock, ctx: exporters.Context, *, batch_records: int = 5000,
                 poll: float = 0.2, base_backoff: float = 0.5, max_backoff: float = 60.0,
                 keep_hours: float = 24.0, on_error: Callable[[Exception], None] | None = None) -> None:
        self.engine, self.clock, self.ctx = engine, clock, ctx
        self.batch_records, self.poll = batch_records, poll
        self.base_backoff, self.max_backoff, self.keep_hours = base_backoff, max_backoff, keep_hours
        self._loops: dict[int, DestinationLoop] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vigil-stream", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for loop in self._loops.values():
            loop.stop.set()
        for loop in self._loops.values():
            loop.thread.join(timeout=15)

    def _sync(self) -> None:
        with self.engine.connect() as conn:
            enabled = {d.id for d in store.SqlDestinations(conn).listing() if d.enabled}
        for dest_id, loop in list(self._loops.items()):
            if dest_id not in enabled or not loop.thread.is_alive():
                loop.stop.set()
                del self._loops[dest_id]
        for dest_id in enabled - set(self._loops):
            loop = DestinationLoop(self, dest_id)
            self._loops[dest_id] = loop
            loop.thread.start()

    def _run(self) -> None:
        rounds = 0
        while not self._stop.is_set():
            try:
                self._sync()
                if rounds % 60 == 0:
                    with self.engine.begin() as conn:
                        store.prune(conn, self.keep_hours, self.clock.now())
            except Exception:
                log.exception("stream worker round failed")
            rounds += 1
            self._stop.wait(1.0)
