"""What a sensor is: a named event source with a capability probe and a health state."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


def health_map(sensors: Mapping[str, Sensor]) -> dict[str, str]:
    return {name: str(s.health()) for name, s in sensors.items()}
