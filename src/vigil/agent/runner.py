"""The composition root: builds spool, sensors and uploader from the settings and runs them."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
from collections.abc import Mapping
from types import FrameType
from typing import Any

from vigil import __version__
from vigil.agent.actions.base import ActionSettings
from vigil.agent.actions.worker import ActionWorker
from vigil.agent.budget import Budget, limit_heap_arenas
from vigil.agent.clock import Clock, SystemClock, iso
from vigil.agent.config import AgentConfig
from vigil.agent.errors import AgentError
from vigil.agent.identity import Identity, load_identity
from vigil.agent.incumbent import HEALTH_KEY as INCUMBENT_HEALTH_KEY
from vigil.agent.incumbent import IncumbentProbe
from vigil.agent.protection import SERVICE as PROTECTION_SERVICE
from vigil.agent.protection import Protection
from vigil.agent.sensors.base import HealthState, Sensor, SensorContext, SensorHealth, provider_map
from vigil.agent.sensors.process_lookup import ProcessDirectory
from vigil.agent.sensors.registry import SensorRegistry, default_registry
from vigil.agent.spool import SPOOL_FILE, Spool
from vigil.agent.transport import AgentTransport, ProxyEnv
from vigil.agent.uploader import Uploader

log = logging.getLogger(__name__)

META_SENSORS = "sensors"
META_PROVIDERS = "providers"  # sensor -> {"provider", "why"}, for the sensors that choose one at start
META_PID = "agent_pid"
META_STARTED = "started_at"
BUDGET_HEALTH_KEY = "resource_budget"  # shown with the sensors: the budget's state and usage


class Agent:
    """A wired agent; ``start`` and ``stop`` are its whole lifecycle."""

    def __init__(
        self,
        config: AgentConfig,
        identity: Identity,
        spool: Spool,
        sensors: dict[str, Sensor],
        transport: AgentTransport,
        clock: Clock,
        budget: Budget | None = None,
        action_settings: ActionSettings | None = None,
        protection: Protection | None = None,
    ) -> None:
        self.config = config
        self.identity = identity
        self.spool = spool
        self.sensors = sensors
        self.budget = budget
        self.clock = clock
        self._transport = transport
        self._saved_health = ""
        self.incumbent = IncumbentProbe()  # the antivirus/EDR already on the device, reported with the sensors
        settings = action_settings or ActionSettings(config.state_dir, identity.server_url)
        self.actions = ActionWorker(identity, transport, clock, settings, self._agent_event)
        self.protection = protection  # ASR and network protection; the sensors' sink taps it
        if protection is not None:
            self.actions.ctx.services[PROTECTION_SERVICE] = protection
        self.uploader = Uploader(
            spool, transport, identity, config, clock, self.sensor_health, device_name=socket.getfqdn(),
            on_commands=self.actions.submit,
        )

    def sensor_health(self) -> dict[str, str]:
        health = {name: str(s.health()) for name, s in self.sensors.items()}
        for s in self.sensors.values():  # a sensor's own keys beside its health (the antivirus's protection state)
            extra = getattr(s, "health_extra", None)
            if callable(extra):
                health.update(extra())
        if self.budget is not None:
            health[BUDGET_HEALTH_KEY] = self.budget.describe()
        health[INCUMBENT_HEALTH_KEY] = self.incumbent.describe()
        text = json.dumps(health, sort_keys=True)
        if text != self._saved_health:  # the health command reads it from the spool database
            self.spool.set_meta(META_SENSORS, text)
            self._saved_health = text
        return health

    def start(self) -> dict[str, SensorHealth]:
        self.spool.set_meta(META_PID, str(os.getpid()))
        self.spool.set_meta(META_STARTED, iso(self.clock.now()))
        reached: dict[str, SensorHealth] = {}
        if self.budget is not None:
            self.budget.start()
        for name, sensor in self.sensors.items():
            try:
                reached[name] = sensor.start()
            except AgentError as e:
                reached[name] = SensorHealth(HealthState.UNAVAILABLE, str(e))
            level = logging.INFO if reached[name].state is HealthState.ACTIVE else logging.WARNING
            log.log(level, "sensor %s: %s", name, reached[name])
        providers = provider_map(self.sensors)
        for name, chosen in providers.items():
            log.info("sensor %s runs on provider %s: %s", name, chosen["provider"], chosen["why"])
        self.spool.set_meta(META_PROVIDERS, json.dumps(providers, sort_keys=True))
        self.sensor_health()
        self._agent_event("AgentStarted", {"ClientVersion": __version__,
                                           "Sensors": {n: str(h) for n, h in reached.items()},
                                           "Providers": providers})
        self._start_protection()
        self.uploader.start()
        self.actions.start()
        log.info("agent %s running as device %s, reporting to %s",
                 __version__, self.identity.device_id, self.identity.server_url)
        return reached

    def stop(self) -> None:
        """Stop sensors first (they flush what they hold), then give the uploader its flush deadline."""
        for name, sensor in self.sensors.items():
            try:
                sensor.stop()
            except (AgentError, OSError) as e:
                log.error("sensor %s did not stop cleanly: %s", name, e)
        if self.budget is not None:
            self.budget.stop()
        counters = self.spool.counters().model_dump()
        self._agent_event("AgentStopped", {"ClientVersion": __version__, "Counters": counters})
        if self.protection is not None:
            self.protection.stop()
        self.actions.stop()
        self.uploader.stop()
        self._transport.close()
        self.spool.set_meta(META_PID, "")
        self.spool.close()
        log.info("agent stopped")

    def _start_protection(self) -> None:
        if self.protection is None:
            return
        try:
            what = self.protection.restore()
        except AgentError as e:
            log.error("could not re-apply the protection bundle at start: %s", e)
        else:
            if what:
                log.info("re-applied %s at start", what)
        self.protection.start()

    def _agent_event(self, action: str, details: dict[str, object]) -> None:
        self.spool.append([{
            "table": "DeviceEvents",
            "Timestamp": iso(self.clock.now()),
            "ActionType": action,
            "ProcessId": os.getpid(),
            "AdditionalFields": details,
        }])


def build_agent(
    config: AgentConfig,
    *,
    clock: Clock | None = None,
    registry: SensorRegistry | None = None,
    environ: Mapping[str, str] | None = None,
) -> Agent:
    """Wire an agent from its settings; raises IdentityError when the device is not enrolled.

    ``environ`` is the process environment as the edge (`vigil agent run`) read it: the proxy variables and the
    test-only action hooks come from it, never from ``os.environ`` here. None: no proxy, no hooks.
    """
    clock = clock or SystemClock()
    identity = load_identity(config.state_dir)
    spool = Spool(config.state_dir / SPOOL_FILE, clock, config.spool_max_events, config.spool_max_bytes)
    budget = Budget(config.budget, losses=spool)
    env = environ or {}
    actions = ActionSettings.from_env(config.state_dir, identity.server_url, env)
    protection = Protection(actions, clock, spool)
    ctx = SensorContext(sink=protection.tap(spool), clock=clock, config=config, device_group=identity.group,
                        budget=budget, processes=ProcessDirectory())
    sensors = (registry if registry is not None else default_registry()).build(ctx)
    transport = AgentTransport(identity, config.request_timeout_seconds, ProxyEnv.of(env))
    return Agent(config, identity, spool, sensors, transport, clock, budget, actions, protection)


def run_agent(
    config: AgentConfig,
    *,
    stop: threading.Event | None = None,
    clock: Clock | None = None,
    registry: SensorRegistry | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Run until ``stop`` is set or, from the main thread, until SIGTERM/SIGINT; then shut down."""
    stop = stop or threading.Event()
    owns_process = threading.current_thread() is threading.main_thread()
    if owns_process:  # not when a program embeds the agent in one of its threads (tests do)
        limit_heap_arenas()
    agent = build_agent(config, clock=clock, registry=registry, environ=environ)
    previous: dict[signal.Signals, Any] = {}
    if owns_process:

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s, shutting down", signal.Signals(signum).name)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        agent.start()
        stop.wait()
    finally:
        agent.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
