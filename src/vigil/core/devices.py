"""Devices as the domain sees them: ids, health status and the default device group."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import NewType

DeviceId = NewType("DeviceId", str)

DEFAULT_GROUP_NAME = "Ungrouped devices (default)"

# Defender calls a device Inactive once it has sent no signal for 7 days.
INACTIVE_AFTER = timedelta(days=7)


class HealthStatus(StrEnum):
    ACTIVE = "Active"
    INACTIVE = "Inactive"
    IMPAIRED_COMMUNICATION = "ImpairedCommunication"
    NO_SENSOR_DATA = "NoSensorData"
    NO_SENSOR_DATA_IMPAIRED_COMMUNICATION = "NoSensorDataImpairedCommunication"


def health_status(last_seen: datetime | None, now: datetime, offboarded: bool = False) -> HealthStatus:
    if offboarded or last_seen is None or now - last_seen > INACTIVE_AFTER:
        return HealthStatus.INACTIVE
    return HealthStatus.ACTIVE
