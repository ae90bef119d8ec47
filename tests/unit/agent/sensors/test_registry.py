"""The sensor registry refuses duplicate names."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from vigil.agent.clock import SystemClock
from vigil.agent.config import AgentConfig
from vigil.agent.errors import DuplicateSensor, SensorError
from vigil.agent.sensors.base import HealthState, SensorContext, SensorHealth
from vigil.agent.sensors.registry import SensorRegistry, default_registry


class ListSink:
    def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        pass


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
    assert default_registry().names() == ("process", "file", "network", "logon", "system_log", "device_info",
                                          "software_inventory", "secure_configuration", "antivirus")


def test_disabled_sensors_are_not_built_and_unknown_ones_raise(tmp_path: Path) -> None:
    ctx = SensorContext(ListSink(), SystemClock(), AgentConfig(state_dir=tmp_path, disabled_sensors=("file",)))
    assert "file" not in default_registry().build(ctx)
    bad = SensorContext(ListSink(), SystemClock(), AgentConfig(state_dir=tmp_path, disabled_sensors=("gps",)))
    with pytest.raises(SensorError, match="gps"):
        default_registry().build(bad)


def test_health_renders_reason() -> None:
    assert str(SensorHealth(HealthState.DEGRADED, "audit unavailable")) == "degraded: audit unavailable"
    assert str(SensorHealth.active()) == "active"
