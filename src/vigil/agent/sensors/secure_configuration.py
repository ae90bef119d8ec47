"""The secure configuration sensor: runs the TVM configuration checks (`vigil.tvm.configuration`) on the host and
sends their results, for the server's DeviceTvmSecureConfigurationAssessment and secure score.

The checks run when the agent starts and every ``secure_configuration_seconds``; a DeviceEvents row of action
type ``SecureConfigurationAssessment`` (fields in `vigil.tvm.configuration_report`) is spooled at start, whenever
a check's result or evidence changed, and at least every ``software_inventory_seconds`` so a server that lost it
gets it again. Each row is the whole assessment.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from vigil.agent.clock import iso
from vigil.agent.sensors.base import HealthState, Row, SensorContext, SensorHealth, SensorThread
from vigil.content.tvm_config import RootView
from vigil.tvm.configuration import assess
from vigil.tvm.configuration_report import CONFIGURATION_ACTION, report_fields

log = logging.getLogger(__name__)


class SecureConfigurationSensor:
    name = "secure_configuration"

    def __init__(self, ctx: SensorContext, root: Path | None = None) -> None:
        self._ctx = ctx
        self._root = root if root is not None else Path(ctx.config.secure_configuration_root)
        self._thread = SensorThread("vigil-sensor-secure-configuration")
        self._health = SensorHealth(HealthState.UNAVAILABLE, "not started")
        self._last: dict[str, Any] | None = None
        self._last_sent = float("-inf")
        self.runs = 0  # how many times the checks ran (tests watch it)

    def probe(self) -> SensorHealth:
        if not self._root.is_dir():
            return SensorHealth(HealthState.UNAVAILABLE, f"{self._root} is not a folder")
        return SensorHealth.active()

    def start(self) -> SensorHealth:
        self._health = self.probe()
        if self._health.state is HealthState.UNAVAILABLE:
            return self._health
        self._thread.start(self._loop)
        return self._health

    def stop(self) -> None:
        self._thread.stop()

    def health(self) -> SensorHealth:
        return self._health

    def _loop(self) -> None:
        self.assess()
        while not self._thread.stopping.wait(self._ctx.config.secure_configuration_seconds):
            self.assess()

    def assess(self) -> list[Row]:
        """Run every check; spool a row when something changed or the last one is a day old."""
        results = assess(RootView(self._root))
        self.runs += 1
        fields = report_fields(results)
        now = self._ctx.clock.monotonic()
        due = now - self._last_sent >= self._ctx.config.software_inventory_seconds
        if fields == self._last and not due:
            return []
        row: Row = {"table": "DeviceEvents", "Timestamp": iso(self._ctx.clock.now()),
                    "ActionType": CONFIGURATION_ACTION, "AdditionalFields": fields}
        self._ctx.sink.append([row])
        self._last, self._last_sent = fields, now
        failing = [a.check.id for a in results if a.result.compliant is False]
        log.info("secure_configuration: score %s, %d checks failing", fields["SecureScore"], len(failing))
        return [row]
