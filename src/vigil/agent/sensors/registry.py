"""The sensor registry: every sensor under a unique name; registering a name twice raises."""

from __future__ import annotations

from collections.abc import Callable

from vigil.agent.errors import DuplicateSensor, SensorError
from vigil.agent.sensors.base import Sensor, SensorContext
from vigil.core.registry import Registry

SensorFactory = Callable[[SensorContext], Sensor]


class SensorRegistry(Registry[SensorFactory]):
    def __init__(self) -> None:
        super().__init__("sensor", duplicate=DuplicateSensor, unknown=SensorError)

    def build(self, ctx: SensorContext) -> dict[str, Sensor]:
        """Every sensor not disabled by the agent's settings; disabling an unknown one raises, listing the known."""
        self.check_known(ctx.config.disabled_sensors)
        sensors = {}
        for name, factory in self.items():
            if name in ctx.config.disabled_sensors:
                continue
            sensor = factory(ctx)
            if sensor.name != name:
                raise DuplicateSensor(f"factory registered as {name!r} built a sensor named {sensor.name!r}")
            sensors[name] = sensor
        return sensors


def default_registry() -> SensorRegistry:
    """The sensors a Linux agent runs; imported here so a missing module fails loudly at start."""
    from vigil.agent.sensors.antivirus import AntivirusSensor
    from vigil.agent.sensors.device_info import DeviceInfoSensor
    from vigil.agent.sensors.file import FileSensor
    from vigil.agent.sensors.logon import LogonSensor
    from vigil.agent.sensors.network import NetworkSensor
    from vigil.agent.sensors.process import ProcessSensor
    from vigil.agent.sensors.secure_configuration import SecureConfigurationSensor
    from vigil.agent.sensors.software_inventory import SoftwareInventorySensor
    from vigil.agent.sensors.system_log import SystemLogSensor

    registry = SensorRegistry()
    # The process sensor first: the others describe acting processes through its table.
    registry.register(ProcessSensor.name, ProcessSensor)
    registry.register(FileSensor.name, FileSensor)
    registry.register(NetworkSensor.name, NetworkSensor)
    registry.register(LogonSensor.name, LogonSensor)
    registry.register(SystemLogSensor.name, SystemLogSensor)
    registry.register(DeviceInfoSensor.name, DeviceInfoSensor)
    registry.register(SoftwareInventorySensor.name, SoftwareInventorySensor)
    registry.register(SecureConfigurationSensor.name, SecureConfigurationSensor)
    registry.register(AntivirusSensor.name, AntivirusSensor)  # real-time protection
    return registry
