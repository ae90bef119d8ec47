"""Runs the custom detection rules when they are due: each minute, every enabled rule whose period has passed."""

from __future__ import annotations

import logging
import threading

from vigil.app import detections
from vigil.app.stores import detection_repository, hunt_runner, sql_store
from vigil.server.services import Services

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


class DetectionScheduler:
    def __init__(self, svc: Services, interval: float = 60.0) -> None:
        self.svc, self.interval = svc, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vigil-detections", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                run_due_once(self.svc)
            except Exception:
                # A broken rule is recorded by its run; this is the scheduler itself failing: loud, not fatal.
                log.exception("custom detection scheduler failed")
