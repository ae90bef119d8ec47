"""Runs the custom detection rules when they are due: each minute, every enabled rule whose period has passed."""

from __future__ import annotations

import logging

from vigil.app import detections
from vigil.app.stores import detection_repository, hunt_runner, sql_store
from vigil.server.services import Services
from vigil.server.workers import PeriodicWorker

log = logging.getLogger("vigil.detections")


def run_due_once(svc: Services) -> list[detections.RunSummary]:
    store = sql_store(svc.engine)
    runs = detections.run_due(detection_repository(store), hunt_runner(store), svc.clock)
    for r in runs:
        if r.status == "failed":
            log.warning("custom detection %d failed%s: %s", r.detection_id,
                        " and was switched off" if r.disabled else "", r.error)
        elif r.new_hits:
            log.info("custom detection %d: %d new hits in %d rows", r.detection_id, r.new_hits, r.rows)
    return runs


def detection_scheduler(svc: Services, interval: float = 60.0) -> PeriodicWorker:
    # Waits a round first: rules are due by their period, not at start-up.
    return PeriodicWorker("detections", interval, lambda: run_due_once(svc), log, wait_first=True)
