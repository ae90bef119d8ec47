"""The device inventory sensor: a DeviceInfo row when the agent starts and every hour after."""

from __future__ import annotations

import logging
import platform
import socket

import psutil

from vigil import __version__
from vigil.agent.clock import iso
from vigil.agent.sensors.base import HealthState, Row, SensorContext, SensorHealth, SensorThread

log = logging.getLogger(__name__)


def ip_addresses() -> list[str]:
    """Addresses of every interface but loopback (IPv6 scope suffixes removed)."""
    out = []
    for nic, addrs in psutil.net_if_addrs().items():
        if nic == "lo":
            continue
        out += [a.address.split("%")[0] for a in addrs if a.family in (socket.AF_INET, socket.AF_INET6)]
    return out


def device_info_row(timestamp: str, device_group: str | None, tags: tuple[str, ...] = ()) -> Row:
    try:
        release = platform.freedesktop_os_release()
    except OSError:
        release = {}
    users = [{"UserName": u.name, "Terminal": u.terminal or ""} for u in psutil.users()]
    return {
        "table": "DeviceInfo",
        "Timestamp": timestamp,
        "ActionType": "DeviceInfo",
        "ClientVersion": __version__,
        "OSPlatform": "Linux",
        "OSDistribution": release.get("ID", ""),
        "OSVersion": release.get("VERSION_ID", ""),
        "OSBuild": platform.release(),
        "OSArchitecture": platform.machine(),
        "IPAddresses": ip_addresses(),
        "LoggedOnUsers": users,
        "MachineGroup": device_group,
        "DeviceTags": list(tags),
    }


class DeviceInfoSensor:
    name = "device_info"

    def __init__(self, ctx: SensorContext) -> None:
        self._ctx = ctx
        self._thread = SensorThread("vigil-sensor-device-info")
        self._health = SensorHealth(HealthState.UNAVAILABLE, "not started")

    def probe(self) -> SensorHealth:
        return SensorHealth.active()

    def start(self) -> SensorHealth:
        self._report()
        self._thread.start(self._loop)
        return self._health

    def stop(self) -> None:
        self._thread.stop()

    def health(self) -> SensorHealth:
        return self._health

    def _loop(self) -> None:
        while not self._thread.stopping.wait(self._ctx.config.device_info_seconds):
            self._report()

    def _report(self) -> None:
        try:
            row = device_info_row(iso(self._ctx.clock.now()), self._ctx.device_group, self._ctx.config.device_tags)
        except OSError as e:
            self._health = SensorHealth(HealthState.DEGRADED, f"cannot read device properties: {e}")
            log.error("device_info: %s", e)
            return
        self._ctx.sink.append([row])
        self._health = SensorHealth.active()
