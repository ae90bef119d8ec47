"""Starts automated investigations for new alerts and follows open ones, every few seconds, in a server thread."""

from __future__ import annotations

import logging
import threading

from vigil.app import air
from vigil.app.stores import sql_store
from vigil.server import actions as action_service
from vigil.server.services import Services

log = logging.getLogger("vigil.air")


class AirWorker:
    def __init__(self, svc: Services, interval: float = 5.0) -> None:
        self.svc, self.interval = svc, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vigil-air", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        store = sql_store(self.svc.engine, action_service.signing_issuer(self.svc.settings))
        severities = list(self.svc.settings.air_alert_severities)
        while not self._stop.is_set():
            try:
                started = air.sweep(store, self.svc.clock, severities)
                if started:
                    log.info("automated investigations started: %s", ", ".join(map(str, started)))
            except Exception:
                # Try again next round; a failed sweep must be loud but must not stop the server.
                log.exception("automated investigation sweep failed")
            self._stop.wait(self.interval)
