"""The sensor registry: every sensor under a unique name; registering a name twice raises."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from vigil.agent.errors import DuplicateSensor, SensorError
from vigil.agent.sensors.base import Sensor, SensorContext

SensorFactory = Callable[[SensorContext], Sensor]


class SensorRegistry:
    def __init__(self) -> None:
        self._factories: dict[str, SensorFactory] = {}

    def register(self, name: str, factory: SensorFactory) -> None:
        if name in self._factories:
            raise DuplicateSensor(f"a sensor named {name!r} is already registered")
        self._factories[name] = factory

    def names(self) -> tuple[str, ...]:
        return tuple(self._factories)

    def build(self, ctx: SensorContext) -> dict[str, Sensor]:
        unknown = set(ctx.config.disabled_sensors) - set(self._factories)
        if unknown:
            raise SensorError(f"cannot disable unknown sensors {sorted(unknown)}; known: {', '.join(self._factories)}")
        sensors = {}
        for name, factory in self._factories.items():
            if name in ctx.config.disabled_sensors:
                continue
            sensor = factory(ctx)
            if sensor.name != name:
                raise DuplicateSensor(f"factory registered as {name!r} built a sensor named {sensor.name!r}")
            sensors[name] = sensor
        return sensors

    def __iter__(self) -> Iterator[str]:
        return iter(self._factories)


def default_registry() -> SensorRegistry:
    """The sensors a Linux agent runs; imported here so a missing module fails loudly at start."""
    from vigil.agent.sensors.device_info import DeviceInfoSensor
    from vigil.agent.sensors.file import FileSensor
    from vigil.agent.sensors.logon import LogonSensor
    from vigil.agent.sensors.network import NetworkSensor
    from vigil.agent.sensors.process import ProcessSensor
    from vigil.agent.sensors.system_log import SystemLogSensor

    registry = SensorRegistry()
    # The process sensor first: the others describe acting processes through its table.
    registry.register(ProcessSensor.name, ProcessSensor)
    registry.register(FileSensor.name, FileSensor)
    registry.register(NetworkSensor.name, NetworkSensor)
    registry.register(LogonSensor.name, LogonSensor)
    registry.register(SystemLogSensor.name, SystemLogSensor)
    registry.register(DeviceInfoSensor.name, DeviceInfoSensor)
    return registry
