"""The agent's clock port: wall time for event timestamps, monotonic time for waits and deadlines."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import lru_cache
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
    if isinstance(ts, datetime):
        return ts.astimezone(UTC).isoformat(timespec="microseconds")
    if ts < 0:
        return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds")
    # Sensors format several timestamps per row, mostly within the same second: only the
    # microseconds are formatted each time (rounded half-even, as datetime.fromtimestamp does).
    seconds = int(ts)
    micros = round((ts - seconds) * 1e6)
    if micros >= 1_000_000:
        seconds, micros = seconds + 1, micros - 1_000_000
    return f"{_second(seconds)}.{micros:06d}+00:00"


@lru_cache(maxsize=256)
def _second(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
