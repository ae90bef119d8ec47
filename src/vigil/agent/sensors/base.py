"""What a sensor is: a named event source with a capability probe and a health state."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from vigil.agent.budget import Budget, unlimited
from vigil.agent.clock import Clock
from vigil.agent.config import AgentConfig
from vigil.agent.sensors.audit_feed import AuditFeed
from vigil.agent.sensors.process_lookup import ProcessDirectory

Row = dict[str, Any]  # one telemetry row keyed by Defender column name, plus "table"


class EventSink(Protocol):
    """Where sensors put rows; the spool implements it. Must not raise on the sensor's thread."""

    def append(self, rows: Sequence[Mapping[str, Any]]) -> None: ...


class HealthState(StrEnum):
    ACTIVE = "active"
    DEGRADED = "degraded"
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True)
class SensorHealth:
    state: HealthState
    reason: str = ""

    def __str__(self) -> str:
        return f"{self.state}: {self.reason}" if self.reason else str(self.state)

    @classmethod
    def active(cls) -> SensorHealth:
        return cls(HealthState.ACTIVE)


class SensorThread:
    """A sensor's own thread: ``stop`` sets ``stopping`` (which the loop watches) and waits up to 5 s."""

    def __init__(self, name: str) -> None:
        self._name = name
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, loop: Callable[[], None]) -> None:
        self._thread = threading.Thread(target=loop, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


class SensorFaults:
    """What a sensor lost to kernel overflows and to its own failures; either turns it from active to degraded."""

    def __init__(self, log: logging.Logger, failure: str, overflows: str = "receive-buffer overflows") -> None:
        self._log = log
        self._failure = failure  # e.g. "logon sensor failed to handle a record"
        self._overflow_text = overflows
        self.overflows = 0
        self.failures = 0

    def failed(self) -> None:
        """Count the exception being handled and log it with its traceback (the first, then every 1000th)."""
        self.failures += 1
        if self.failures == 1 or self.failures % 1000 == 0:  # a bug must not flood the log
            self._log.exception("%s (%d so far)", self._failure, self.failures)

    def degrade(self, health: SensorHealth) -> SensorHealth:
        if health.state is HealthState.ACTIVE and (self.overflows or self.failures):
            return SensorHealth(HealthState.DEGRADED,
                                f"{self.overflows} {self._overflow_text}, {self.failures} processing failures")
        return health


@dataclass(frozen=True)
class SensorContext:
    """The narrow view a sensor gets of the agent: a sink, a clock, the settings, the budget, the
    shared process directory (sensors that see only a pid describe the process through it) and the
    shared audit feed (one multicast reader that parses each record once for every sensor)."""

    sink: EventSink
    clock: Clock
    config: AgentConfig
    device_group: str | None = None
    budget: Budget = field(default_factory=unlimited)
    processes: ProcessDirectory = field(default_factory=ProcessDirectory)
    audit: AuditFeed = field(default_factory=AuditFeed)


class Sensor(Protocol):
    name: str

    def probe(self) -> SensorHealth:
        """Check the kernel interfaces this sensor needs, without starting it."""
        ...

    def start(self) -> SensorHealth:
        """Start producing events (in its own thread); returns the health it reached."""
        ...

    def stop(self) -> None: ...

    def health(self) -> SensorHealth: ...


def provider_map(sensors: Mapping[str, Sensor]) -> dict[str, dict[str, str]]:
    """Sensor → the provider it runs on and why, for the sensors that choose one (their ``provider`` and
    ``provider_why``; ``provider`` is "" when none started, and ``why`` then says what failed)."""
    chosen: dict[str, dict[str, str]] = {}
    for name, s in sensors.items():
        provider, why = getattr(s, "provider", None), getattr(s, "provider_why", None)
        if isinstance(provider, str) and isinstance(why, str) and (provider or why):
            chosen[name] = {"provider": provider or "none", "why": why}
    return chosen


def health_map(sensors: Mapping[str, Sensor]) -> dict[str, str]:
    return {name: str(s.health()) for name, s in sensors.items()}
