"""Starts automated investigations for new alerts and follows open ones, every few seconds, in a server thread."""

from __future__ import annotations

import logging

from vigil.app import air
from vigil.app.stores import sql_store
from vigil.server import actions as action_service
from vigil.server.services import Services
from vigil.server.workers import PeriodicWorker

log = logging.getLogger("vigil.air")


def air_worker(svc: Services, interval: float = 5.0) -> PeriodicWorker:
    store = sql_store(svc.engine, action_service.signing_issuer(svc.settings))
    severities = list(svc.settings.air_alert_severities)

    def sweep() -> None:
        started = air.sweep(store, svc.clock, severities)
        if started:
            log.info("automated investigations started: %s", ", ".join(map(str, started)))

    return PeriodicWorker("investigations", interval, sweep, log)
