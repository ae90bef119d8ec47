"""Real-time protection as a sensor: the antivirus hook on the on-access gate, its health and protection state."""

from __future__ import annotations

import json
import logging

from vigil import __version__
from vigil.agent import incumbent
from vigil.agent.antivirus import (
    ExclusionWatch,
    Mode,
    RealTimeHook,
    history,
    last_scans,
    load_definitions,
    resolve_mode,
)
from vigil.agent.errors import AgentError
from vigil.agent.fanotify import AccessGate, GateSettings, local_mounts, with_prefixes
from vigil.agent.sensors.base import HealthState, SensorContext, SensorHealth
from vigil.av.engine import Engine
from vigil.av.quarantine import QuarantineStore

log = logging.getLogger(__name__)

STATE_KEY = "antivirus_state"  # the health map's key for the protection state (JSON), read by the server


class AntivirusSensor:
    name = "antivirus"

    def __init__(self, ctx: SensorContext) -> None:
        self._ctx = ctx
        self.gate: AccessGate | None = None
        self.hook: RealTimeHook | None = None
        self.mode: Mode | None = None
        self.mode_why = ""
        self._definitions_version = 0
        self._definitions_created: str | None = None
        self._health = SensorHealth(HealthState.UNAVAILABLE, "not started")

    def probe(self) -> SensorHealth:
        return SensorHealth.active()

    def start(self) -> SensorHealth:
        cfg = self._ctx.config
        self.mode, self.mode_why = resolve_mode(cfg.av_mode, incumbent.detect())
        try:
            definitions = load_definitions(cfg.state_dir)
        except AgentError as e:
            self._health = SensorHealth(HealthState.UNAVAILABLE, str(e))
            return self._health
        self._definitions_version = definitions.version
        self._definitions_created = definitions.created.isoformat() if definitions.created else None
        if not cfg.av_realtime:
            self._health = SensorHealth(HealthState.UNAVAILABLE, "real-time protection is off (av_realtime)")
            return self._health
        quarantine = QuarantineStore(cfg.state_dir / "quarantine")
        self.hook = RealTimeHook(Engine(definitions), self.mode, self._ctx.sink, self._ctx.clock, quarantine,
                                 history(cfg.state_dir), ExclusionWatch(cfg.state_dir))
        marks = tuple(cfg.av_marks) or tuple(local_mounts())
        settings = GateSettings(marks=marks, open_perm=cfg.av_open_perm, budget_seconds=cfg.av_budget_seconds,
                                never_block=(*with_prefixes([str(cfg.state_dir)]), *cfg.own_paths()))
        self.gate = AccessGate(settings, [self.hook])
        try:
            self.gate.start()
        except OSError as e:
            self.hook.close()
            self.gate = self.hook = None
            self._health = SensorHealth(HealthState.UNAVAILABLE, f"fanotify permission events refused: {e}")
            return self._health
        log.info("real-time protection in %s mode (%s) on %d mount(s)", self.mode, self.mode_why, len(marks))
        self._health = SensorHealth(HealthState.ACTIVE, f"{self.mode} mode")
        return self._health

    def stop(self) -> None:
        if self.gate is not None:
            self.gate.stop()
        if self.hook is not None:
            self.hook.close()

    def health(self) -> SensorHealth:
        gate = self.gate
        if gate is None or self._health.state is not HealthState.ACTIVE:
            return self._health
        if not gate.running:
            return SensorHealth(HealthState.DEGRADED, gate.error or "stopped")
        c = gate.counters
        if c.failed_open or c.hook_errors or c.overflows:
            return SensorHealth(HealthState.DEGRADED, f"{self.mode} mode; {c.failed_open} accesses allowed "
                                f"unchecked past the time budget, {c.hook_errors} scan failures, "
                                f"{c.overflows} queue overflows")
        return self._health

    def protection_state(self) -> dict[str, object]:
        """What the server shows per device: engine, definitions, RTP, mode, last scans, counters."""
        gate, hook = self.gate, self.hook
        return {
            "engineVersion": __version__,
            "definitionsVersion": self._definitions_version,
            "definitionsCreated": self._definitions_created,
            "realTimeProtection": gate is not None and gate.running,
            "mode": str(self.mode) if self.mode else None,
            "modeWhy": self.mode_why,
            "lastScans": last_scans(self._ctx.config.state_dir),
            "gate": gate.counters.as_dict() if gate is not None else {},
            "protection": dict(hook.counters.__dict__) if hook is not None else {},
        }

    def health_extra(self) -> dict[str, str]:
        return {STATE_KEY: json.dumps(self.protection_state(), sort_keys=True)}
