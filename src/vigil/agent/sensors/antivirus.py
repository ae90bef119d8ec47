"""The antivirus as a sensor: real-time protection on the on-access gate, the group's policy and definitions
fetched from the server, scheduled scans, and the protection state reported with the sensors' health.

Settings: the group's policy (from the server) wins where it sets a value; the agent's own settings
(``av_realtime``, ``av_mode``, ``av_open_perm``) apply where it does not.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from vigil import __version__
from vigil.agent import incumbent
from vigil.agent.antivirus import (
    ExclusionWatch,
    Mode,
    RealTimeHook,
    detection_row,
    history,
    last_scans,
    load_definitions,
    local_exclusions,
    record_scan,
    resolve_mode,
    served_policy,
    update_from_server,
)
from vigil.agent.clock import iso
from vigil.agent.errors import AgentError
from vigil.agent.fanotify import AccessGate, GateSettings, local_mounts, with_prefixes
from vigil.agent.identity import load_identity
from vigil.agent.sensors.base import HealthState, SensorContext, SensorHealth, SensorThread
from vigil.agent.transport import AgentTransport
from vigil.av.bundle import InstalledDefinitions
from vigil.av.engine import Engine
from vigil.av.exclusions import ExclusionError
from vigil.av.policy import AvPolicy
from vigil.av.quarantine import QuarantineStore
from vigil.av.scan import ScanType, be_polite, paths_for, run_scan

log = logging.getLogger(__name__)

STATE_KEY = "antivirus_state"  # the health map's key for the protection state (JSON), read by the server
TICK_SECONDS = 20.0  # how often the policy is re-applied and scheduled scans are checked


@dataclass(frozen=True)
class _Wanted:
    realtime: bool
    mode_setting: str
    open_perm: bool
    definitions: tuple[int, int] | None  # the installed bundle's (mtime_ns, size): a new one rebuilds the engine
    policy: AvPolicy = field(default_factory=AvPolicy)  # the group's: threat actions, PUA mode, allowed threats


class AntivirusSensor:
    name = "antivirus"

    def __init__(self, ctx: SensorContext, update_seconds: float = 900.0,
                 now: Callable[[], datetime] = datetime.now) -> None:
        self._ctx = ctx
        self._update_seconds = update_seconds
        self._now = now  # local time: scheduled scans are set in the device's time
        self.gate: AccessGate | None = None
        self.hook: RealTimeHook | None = None
        self.mode: Mode | None = None
        self.mode_why = ""
        self._wanted: _Wanted | None = None
        self._definitions_version = 0
        self._definitions_created: str | None = None
        self._thread = SensorThread("vigil-sensor-antivirus")
        self._lock = threading.Lock()
        self._health = SensorHealth(HealthState.UNAVAILABLE, "not started")
        self._transport: AgentTransport | None = None
        self._last_update: float | None = None
        self.update_error: str | None = None
        self._scans_done: set[tuple[str, str]] = set()
        self.scanning = threading.Lock()

    @property
    def _state(self) -> Path:
        return self._ctx.config.state_dir

    def probe(self) -> SensorHealth:
        return SensorHealth.active()

    # -- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> SensorHealth:
        self.apply()
        self._thread.start(self._loop)
        return self._health

    def stop(self) -> None:
        self._thread.stop()
        with self._lock:
            self._stop_gate()
        if self._transport is not None:
            self._transport.close()

    def _loop(self) -> None:
        while not self._thread.stopping.wait(TICK_SECONDS):
            try:
                self.tick()
            except Exception:  # the loop must survive a bug; the gate keeps running meanwhile
                log.exception("antivirus: policy, update or scheduled scan failed")

    def tick(self) -> None:
        """One round: the server's update when due, the policy applied, a scheduled scan when due."""
        now = self._ctx.clock.monotonic()
        if self._last_update is None or now - self._last_update >= self._update_seconds:
            self._last_update = now
            self.update()
        self.apply()
        self.run_due_scans()

    # -- the server's policy and definitions ----------------------------------------------------------------
    def update(self) -> None:
        try:
            identity = load_identity(self._state)
        except AgentError:
            return  # not enrolled: the built-in definitions and local settings only
        try:
            if self._transport is None:
                self._transport = AgentTransport(identity, self._ctx.config.request_timeout_seconds)
            result = update_from_server(self._state, self._transport)
        except (AgentError, OSError) as e:
            self.update_error = str(e)
            log.warning("antivirus update from the server failed: %s", e)
            return
        self.update_error = None
        if result.installed_now:
            log.info("antivirus definitions version %d installed from the server", result.installed_version)
            self._ctx.sink.append([{"table": "DeviceEvents", "Timestamp": iso(self._ctx.clock.now()),
                                    "ActionType": "AntivirusDefinitionsUpdated",
                                    "AdditionalFields": {"DefinitionsVersion": result.installed_version}}])

    def _wanted_now(self) -> _Wanted:
        cfg, policy = self._ctx.config, served_policy(self._state)
        current = InstalledDefinitions(self._state / "av" / "definitions").current
        try:
            st = current.stat()
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        return _Wanted(cfg.av_realtime if policy.realtime is None else policy.realtime,
                       policy.mode or cfg.av_mode,
                       cfg.av_open_perm if policy.open_perm is None else policy.open_perm, stamp, policy)

    def apply(self) -> None:
        """(Re)build the engine and the gate when the wanted settings or the installed definitions changed."""
        wanted = self._wanted_now()
        with self._lock:
            if wanted == self._wanted:
                return
            self._wanted = wanted
            self._stop_gate()
            self._health = self._start_gate(wanted)

    def _stop_gate(self) -> None:
        if self.gate is not None:
            self.gate.stop()
        if self.hook is not None:
            self.hook.close()
        self.gate = self.hook = None

    def _start_gate(self, wanted: _Wanted) -> SensorHealth:
        cfg = self._ctx.config
        self.mode, self.mode_why = resolve_mode(wanted.mode_setting, incumbent.detect())
        try:
            definitions = load_definitions(self._state)
        except AgentError as e:
            return SensorHealth(HealthState.UNAVAILABLE, str(e))
        self._definitions_version = definitions.version
        self._definitions_created = definitions.created.isoformat() if definitions.created else None
        if not wanted.realtime:
            return SensorHealth(HealthState.UNAVAILABLE, "real-time protection is off (policy or av_realtime)")
        quarantine = QuarantineStore(self._state / "quarantine")
        hook = RealTimeHook(Engine(definitions), self.mode, self._ctx.sink, self._ctx.clock, quarantine,
                            history(self._state), ExclusionWatch(self._state), wanted.policy)
        marks = tuple(cfg.av_marks) or tuple(local_mounts())
        settings = GateSettings(marks=marks, open_perm=wanted.open_perm, budget_seconds=cfg.av_budget_seconds,
                                never_block=(*with_prefixes([str(self._state)]), *cfg.own_paths()))
        gate = AccessGate(settings, [hook])
        try:
            gate.start()
        except OSError as e:
            hook.close()
            return SensorHealth(HealthState.UNAVAILABLE, f"fanotify permission events refused: {e}")
        self.gate, self.hook = gate, hook
        log.info("real-time protection in %s mode (%s) on %d mount(s)", self.mode, self.mode_why, len(marks))
        return SensorHealth(HealthState.ACTIVE, f"{self.mode} mode")

    # -- scheduled scans ------------------------------------------------------------------------------------
    def run_due_scans(self) -> list[str]:
        """Start each scheduled scan of the policy whose minute it is (once per day and time); their types."""
        now = self._now()
        hhmm, day = now.strftime("%H:%M"), now.strftime("%Y-%m-%d")
        started = []
        for scan in served_policy(self._state).scans:
            key = (day, f"{scan.type}@{scan.at}")
            if key in self._scans_done or not scan.due(now.weekday(), hhmm):
                continue
            self._scans_done.add(key)
            started.append(scan.type)
            threading.Thread(target=self.scheduled_scan, args=(ScanType(scan.type),), name="vigil-av-scheduled",
                             daemon=True).start()
        return started

    def scheduled_scan(self, scan_type: ScanType) -> None:
        if not self.scanning.acquire(blocking=False):
            log.info("scheduled %s scan skipped: another scan is running", scan_type)
            return
        try:
            for problem in be_polite():
                log.info("scheduled scan: %s", problem)
            try:
                definitions, exclusions = load_definitions(self._state), local_exclusions(self._state)
            except (AgentError, ExclusionError) as e:
                log.error("scheduled %s scan not run: %s", scan_type, e)
                return
            report = run_scan(Engine(definitions), scan_type, paths_for(scan_type), excluded=[str(self._state)],
                              exclusions=exclusions)
            clock = self._ctx.clock
            rows = [detection_row(clock, d, source="Antivirus", action_taken="None", mode=self.mode,
                                  extra={"ScanType": f"Scheduled {scan_type}"}) for d in report.detections]
            rows.append({"table": "DeviceEvents", "Timestamp": iso(clock.now()), "ActionType": "AntivirusScanCompleted",
                         "AdditionalFields": {"ScanType": f"Scheduled {scan_type}", "Files": report.files,
                                              "Bytes": report.bytes, "Threats": len(report.detections),
                                              "Seconds": round(report.seconds, 3),
                                              "DefinitionsVersion": report.definitions_version}})
            self._ctx.sink.append(rows)
            history(self._state).record(report.detections, when=clock.now(), source="Scheduled scan", action="None")
            if report.finished is not None:
                record_scan(self._state, str(scan_type), report.finished)
        finally:
            self.scanning.release()

    # -- health and state -----------------------------------------------------------------------------------
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
            "lastScans": last_scans(self._state),
            "updateError": self.update_error,
            "gate": gate.counters.as_dict() if gate is not None else {},
            "protection": dict(hook.counters.__dict__) if hook is not None else {},
        }

    def health_extra(self) -> dict[str, str]:
        return {STATE_KEY: json.dumps(self.protection_state(), sort_keys=True)}
