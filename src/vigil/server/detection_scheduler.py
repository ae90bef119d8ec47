"""Runs the custom detection rules when they are due: each minute, every enabled rule whose period has passed."""

from __future__ import annotations

import logging
from typing import Any

from vigil.app import detections
from vigil.app.stores import detection_repository, hunt_runner, sql_store
from vigil.config import Settings
from vigil.core.clock import Clock
from vigil.server import actions as action_service
from vigil.server.services import Services
from vigil.server.workers import PeriodicWorker

log = logging.getLogger("vigil.detections")


def run_due_once(svc: Services) -> list[detections.RunSummary]:
    return run_due_on(svc.engine, svc.settings, svc.clock)


def run_due_on(engine: Any, settings: Settings, clock: Clock) -> list[detections.RunSummary]:
    """One round of the scheduler on ``engine`` (the server's SQLAlchemy engine) at ``clock``'s time (tests pass
    a fixed clock)."""
    # The store with the server's signing path: the rules' automatic actions are signed as they are recorded.
    store = sql_store(engine, action_service.signing_issuer(settings))
    runs = detections.run_due(detection_repository(store), hunt_runner(store), clock, store)
    for r in runs:
        if r.status == "failed":
            log.warning("custom detection %d failed%s: %s", r.detection_id,
                        " and was switched off" if r.disabled else "", r.error)
        elif r.new_hits:
            log.info("custom detection %d: %d new hits in %d rows", r.detection_id, r.new_hits, r.rows)
        for a in r.actions:
            if a.error:
                log.warning("custom detection %d: %s on %s refused: %s", r.detection_id, a.action, a.device_id,
                            a.error)
    return runs


def detection_scheduler(svc: Services, interval: float = 60.0) -> PeriodicWorker:
    # Waits a round first: rules are due by their period, not at start-up.
    return PeriodicWorker("detections", interval, lambda: run_due_once(svc), log, wait_first=True)
