"""The agent's clock port: wall time for event timestamps, monotonic time for waits and deadlines."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


def iso(ts: float | datetime) -> str:
    """ISO 8601 UTC with microseconds, the form every telemetry timestamp takes."""
    dt = ts if isinstance(ts, datetime) else datetime.fromtimestamp(ts, UTC)
    return dt.astimezone(UTC).isoformat(timespec="microseconds")
