"""Enforces the data retention chosen at set-up: telemetry older than the window is deleted hourly."""

from __future__ import annotations

import logging
from datetime import timedelta

from vigil.server.services import Services
from vigil.server.workers import PeriodicWorker
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


def retention_worker(svc: Services, interval: float = 3600.0) -> PeriodicWorker:
    return PeriodicWorker("retention", interval, lambda: purge_once(svc), log)
