"""The sensor registry refuses duplicate names."""

from __future__ import annotations

import pytest

from vigil.agent.errors import DuplicateSensor
from vigil.agent.sensors.base import HealthState, SensorContext, SensorHealth
from vigil.agent.sensors.registry import SensorRegistry, default_registry


class Dummy:
    name = "dummy"

    def __init__(self, ctx: SensorContext) -> None:
        self.ctx = ctx

    def probe(self) -> SensorHealth:
        return SensorHealth.active()

    def start(self) -> SensorHealth:
        return SensorHealth.active()

    def stop(self) -> None:
        pass

    def health(self) -> SensorHealth:
        return SensorHealth(HealthState.DEGRADED, "why")


def test_duplicate_names_raise() -> None:
    reg = SensorRegistry()
    reg.register("dummy", Dummy)
    with pytest.raises(DuplicateSensor, match="dummy"):
        reg.register("dummy", Dummy)


def test_default_registry_names() -> None:
    assert default_registry().names() == ("process", "device_info")


def test_health_renders_reason() -> None:
    assert str(SensorHealth(HealthState.DEGRADED, "audit unavailable")) == "degraded: audit unavailable"
    assert str(SensorHealth.active()) == "active"
