"""The agent's resource budget: CPU and memory caps, per-sensor rate limits with aggregation, counted drops.

Nothing the budget refuses disappears silently: every row it folds or drops is counted under
``dropped.<reason>`` in the spool counters, so ``produced = spooled + sum(dropped)`` still holds.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)

Row = dict[str, Any]  # the same flat telemetry row the sensors produce

DROP_AGGREGATED = "aggregated"  # folded into a summary row (its AdditionalFields.AggregatedCount)
DROP_RATE_LIMIT = "rate_limit"  # over the sensor's rate with no room left to aggregate
DROP_MEMORY = "memory_budget"  # shed while the agent was over its memory cap
DROP_KERNEL_OVERFLOW = "kernel_overflow"  # a kernel queue overflowed (at least this many events lost)

_PAGE = os.sysconf("SC_PAGE_SIZE")
# RSS growth (MiB) over its lowest sample after which freed heap is handed back to the kernel.
TRIM_GROWTH_MIB = 8.0


class LossRecorder(Protocol):
    """Where counted drops go; the spool implements it (persisted with its other counters)."""

    def record_dropped(self, reason: str, count: int) -> None: ...


@dataclass(frozen=True)
class BudgetLimits:
    cpu_percent: float = 25.0  # of one core, averaged over ``window_seconds``
    memory_mib: float = 200.0  # resident set size
    window_seconds: float = 1.0
    aggregate_seconds: float = 2.0  # how long a summary row collects before it is emitted
    max_aggregate_keys: int = 5_000  # distinct summaries per sensor before rows are dropped outright
    rate_limits: tuple[tuple[str, float], ...] = (("file", 2_000.0), ("network", 1_000.0), ("system_log", 200.0))
    throttled_rate_factor: float = 0.25  # rate limits shrink to this while CPU is over its cap

    def rate_for(self, sensor: str) -> float | None:
        return next((r for n, r in self.rate_limits if n == sensor), None)


@dataclass(frozen=True)
class Usage:
    cpu_percent: float
    rss_mib: float
    over_cpu: bool
    over_memory: bool

    def __str__(self) -> str:
        return f"cpu {self.cpu_percent:.1f}%, rss {self.rss_mib:.0f} MiB"


def rss_mib() -> float:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * _PAGE / (1 << 20)


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim  # glibc only
    except (AttributeError, OSError):
        return None
    return trim


_TRIM = _malloc_trim()
_M_ARENA_MAX = -8  # glibc's mallopt parameter
HEAP_ARENAS = 2


def limit_heap_arenas(count: int = HEAP_ARENAS) -> bool:
    """Cap glibc's malloc arenas for this process; False where the C library has no such setting.

    glibc gives threads that contend for the heap arenas of their own (up to eight per core), and each keeps
    what a burst left in it: the sensors', uploader's and sampler's threads made the agent's peak RSS ~6 MiB
    higher with the default than with two (bench/sensor.py, all sensors), for no measurable CPU. Call it
    before the threads start."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # glibc only
    except (AttributeError, OSError):
        return False
    return bool(mallopt(_M_ARENA_MAX, count))


def release_free_heap() -> bool:
    """Give the C heap's free pages back to the kernel; False where the C library cannot.

    A burst of events (a file sensor's 9,000 rows held for attribution, their JSON bodies) leaves
    tens of MiB free in glibc's per-thread arenas, which it keeps: RSS would stay at the burst's peak."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


@dataclass
class _Summary:
    row: Row
    since: float
    folded: int = 0


class Gate:
    """One sensor's share of the budget: a token bucket; rows over it are aggregated, then dropped."""

    def __init__(self, sensor: str, budget: Budget, rate: float | None, essential: bool) -> None:
        self.sensor = sensor
        self._budget = budget
        self._rate = rate
        self._essential = essential
        self._tokens = rate or 0.0
        self._last = time.monotonic()
        self._summaries: dict[Hashable, _Summary] = {}
        self._lock = threading.Lock()
        self.passed = 0
        self.folded = 0
        self.dropped = 0

    def filter(self, rows: Sequence[Row], key: Callable[[Row], Hashable]) -> list[Row]:
        """The rows to emit now; the rest are held as summaries or counted as dropped."""
        usage = self._budget.usage
        if usage.over_memory and not self._essential:
            self._budget.record(DROP_MEMORY, len(rows))
            self.dropped += len(rows)
            return []
        if self._rate is None:
            self.passed += len(rows)
            return list(rows)
        rate = self._rate * (self._budget.limits.throttled_rate_factor if usage.over_cpu else 1.0)
        now = time.monotonic()
        out: list[Row] = []
        folded = dropped = 0
        with self._lock:
            self._tokens = min(rate, self._tokens + (now - self._last) * rate)
            self._last = now
            for row in rows:
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    out.append(row)
                    continue
                k = key(row)
                summary = self._summaries.get(k)
                if summary is not None:
                    summary.folded += 1
                    folded += 1
                elif len(self._summaries) < self._budget.limits.max_aggregate_keys:
                    self._summaries[k] = _Summary(row, now)
                else:
                    dropped += 1
        self.passed += len(out)
        self.folded += folded
        self.dropped += dropped
        self._budget.record(DROP_AGGREGATED, folded)
        self._budget.record(f"{DROP_RATE_LIMIT}.{self.sensor}", dropped)
        return out

    def flush(self, force: bool = False) -> list[Row]:
        """Summary rows whose window has passed (all of them when ``force``)."""
        now = time.monotonic()
        window = self._budget.limits.aggregate_seconds
        out: list[Row] = []
        with self._lock:
            for k in [k for k, s in self._summaries.items() if force or now - s.since >= window]:
                s = self._summaries.pop(k)
                row = dict(s.row)
                if s.folded:
                    extra: dict[str, Any] = dict(row.get("AdditionalFields") or {})
                    extra["AggregatedCount"] = s.folded + 1
                    extra["AggregatedSeconds"] = round(now - s.since, 3)
                    row["AdditionalFields"] = extra
                out.append(row)
        self.passed += len(out)
        return out

    def overflowed(self, count: int = 1) -> None:
        """A kernel queue overflowed: the lost events cannot be counted exactly, only that they were."""
        self._budget.record(DROP_KERNEL_OVERFLOW, count)
        self.dropped += count


class Budget:
    """Measures the agent's own CPU and memory; sensors ask it through their gates."""

    def __init__(self, limits: BudgetLimits, losses: LossRecorder | None = None) -> None:
        self.limits = limits
        self._losses = losses
        self._gates: dict[str, Gate] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cpu = cpu_seconds()
        self._at = time.monotonic()
        self.usage = Usage(0.0, rss_mib(), False, False)
        self.throttled_seconds = 0.0
        self._rss_floor = self.usage.rss_mib  # the lowest RSS sampled since the heap was last trimmed
        self.heap_trims = 0

    def gate(self, sensor: str, *, essential: bool = False) -> Gate:
        if sensor in self._gates:
            raise ValueError(f"a budget gate for {sensor!r} exists already")
        gate = self._gates[sensor] = Gate(sensor, self, self.limits.rate_for(sensor), essential)
        return gate

    def record(self, reason: str, count: int) -> None:
        if count and self._losses is not None:
            self._losses.record_dropped(reason, count)

    def sample(self) -> Usage:
        """Measure CPU since the last sample and RSS now; flips the over-cap flags the gates read."""
        now, cpu = time.monotonic(), cpu_seconds()
        elapsed = max(now - self._at, 1e-6)
        percent = 100.0 * (cpu - self._cpu) / elapsed
        self._at, self._cpu = now, cpu
        rss = rss_mib()
        self._rss_floor = min(self._rss_floor, rss)
        if rss > self._rss_floor + TRIM_GROWTH_MIB and release_free_heap():
            self.heap_trims += 1
            rss = self._rss_floor = rss_mib()
        usage = Usage(percent, rss, percent > self.limits.cpu_percent, rss > self.limits.memory_mib)
        if usage.over_cpu != self.usage.over_cpu or usage.over_memory != self.usage.over_memory:
            level = logging.WARNING if usage.over_cpu or usage.over_memory else logging.INFO
            log.log(level, "resource budget: %s (caps: cpu %.0f%%, rss %.0f MiB)%s", usage,
                    self.limits.cpu_percent, self.limits.memory_mib,
                    "; throttling noisy sensors" if usage.over_cpu or usage.over_memory else "")
        if usage.over_cpu:
            self.throttled_seconds += elapsed
        self.usage = usage
        return usage

    def pace(self) -> None:
        """Called by sensor loops: while over the CPU cap, yield the CPU a little (kernel queues absorb)."""
        if self.usage.over_cpu:
            time.sleep(0.02)

    def describe(self) -> str:
        u = self.usage
        state = "throttling" if u.over_cpu or u.over_memory else "within budget"
        return (f"{state}: {u} (caps {self.limits.cpu_percent:.0f}% cpu, {self.limits.memory_mib:.0f} MiB);"
                f" throttled {self.throttled_seconds:.0f} s")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="vigil-budget", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.limits.window_seconds):
            self.sample()


def unlimited() -> Budget:
    """A budget with no caps, for sensors built without an agent (tests, tools)."""
    return Budget(BudgetLimits(cpu_percent=float("inf"), memory_mib=float("inf"), rate_limits=()))
