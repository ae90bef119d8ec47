"""Enforces the data retention chosen at set-up: telemetry older than the window is deleted hourly."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from vigil.server.services import Services
from vigil.store import audit
from vigil.store.telemetry import purge_older_than

log = logging.getLogger("vigil.retention")


def purge_once(svc: Services) -> int:
    cutoff = svc.clock.now() - timedelta(days=svc.settings.retention_days)
    with svc.engine.begin() as conn:
        n = purge_older_than(conn, cutoff)
    if n:
        log.info("retention: deleted %d telemetry rows older than %s", n, cutoff.isoformat())
    audit_cutoff = svc.clock.now() - timedelta(days=svc.settings.audit_retention_days)
    with svc.engine.begin() as conn:
        pruned = audit.purge_older_than(conn, audit_cutoff)
    if pruned:
        log.info("retention: deleted %d audit entries older than %s", pruned, audit_cutoff.isoformat())
    return n


class RetentionWorker:
    def __init__(self, svc: Services, interval: float = 3600.0) -> None:
        self.svc, self.interval = svc, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vigil-retention", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                purge_once(self.svc)
            except Exception:
                # Keep enforcing on the next round; a failed purge must be loud but not fatal.
                log.exception("retention purge failed")
            self._stop.wait(self.interval)
