"""The budget: rate limits aggregate then drop, caps shed load, and every refusal is counted."""

from __future__ import annotations

from collections import Counter

import pytest

from vigil.agent.budget import DROP_AGGREGATED, DROP_MEMORY, Budget, BudgetLimits, Usage


class Losses:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def record_dropped(self, reason: str, count: int) -> None:
        self.counts[reason] += count


def row(i: int, folder: str = "/d") -> dict[str, object]:
    return {"ActionType": "FileCreated", "InitiatingProcessId": 1, "FolderPath": f"{folder}/f{i}"}


def key(r: dict[str, object]) -> object:
    return r["ActionType"], str(r["FolderPath"]).rsplit("/", 1)[0]


def test_rows_over_the_rate_fold_into_one_summary_per_key() -> None:
    losses = Losses()
    gate = Budget(BudgetLimits(rate_limits=(("file", 10.0),)), losses).gate("file")
    passed = gate.filter([row(i) for i in range(100)], key)
    assert len(passed) == 10
    summaries = gate.flush(force=True)
    assert len(summaries) == 1 and summaries[0]["AdditionalFields"]["AggregatedCount"] == 90
    assert losses.counts == {DROP_AGGREGATED: 89}
    assert len(passed) + len(summaries) + losses.counts[DROP_AGGREGATED] == 100


def test_past_the_summary_limit_rows_are_dropped_and_counted() -> None:
    losses = Losses()
    budget = Budget(BudgetLimits(rate_limits=(("file", 1.0),), max_aggregate_keys=2), losses)
    gate = budget.gate("file")
    out = gate.filter([row(i, folder=f"/d{i}") for i in range(10)], key)
    assert len(out) == 1 and len(gate.flush(force=True)) == 2
    assert losses.counts == {"rate_limit.file": 7}


def test_sensors_without_a_rate_pass_everything() -> None:
    gate = Budget(BudgetLimits(rate_limits=()), Losses()).gate("process")
    assert len(gate.filter([row(i) for i in range(1000)], key)) == 1000


def test_over_the_memory_cap_non_essential_rows_are_shed_and_counted() -> None:
    losses = Losses()
    budget = Budget(BudgetLimits(), losses)
    budget.usage = Usage(cpu_percent=1.0, rss_mib=999.0, over_cpu=False, over_memory=True)
    assert budget.gate("file").filter([row(1), row(2)], key) == []
    assert len(budget.gate("process", essential=True).filter([row(1)], key)) == 1
    assert losses.counts == {DROP_MEMORY: 2}


def test_over_the_cpu_cap_rates_shrink() -> None:
    budget = Budget(BudgetLimits(cpu_percent=0.0, rate_limits=(("file", 100.0),), throttled_rate_factor=0.1),
                    Losses())
    gate = budget.gate("file")
    sum(range(2_000_000))  # burn a little CPU so the sample is over a 0 % cap
    assert budget.sample().over_cpu
    assert len(gate.filter([row(i) for i in range(100)], key)) <= 10
    assert "throttling" in budget.describe()


def test_a_sensor_gets_one_gate() -> None:
    budget = Budget(BudgetLimits(), Losses())
    budget.gate("file")
    try:
        budget.gate("file")
    except ValueError as e:
        assert "exists" in str(e)
    else:
        raise AssertionError("a second gate for one sensor must raise")


def test_a_burst_s_freed_heap_goes_back_to_the_kernel_at_the_next_sample() -> None:
    from vigil.agent.budget import TRIM_GROWTH_MIB, release_free_heap, rss_mib

    if not release_free_heap():
        pytest.skip("no malloc_trim in this C library")
    budget = Budget(BudgetLimits())
    # A burst of row-sized objects (malloc'd, not pymalloc'd), most freed again, a few kept:
    # glibc keeps the freed pages unless asked to give them back.
    burst = [bytes(600 + i % 64) for i in range(120_000)]
    kept = burst[::64]
    del burst
    high = rss_mib()
    if high < budget.usage.rss_mib + TRIM_GROWTH_MIB:
        pytest.skip("the burst did not raise RSS here")
    usage = budget.sample()
    assert budget.heap_trims == 1
    assert usage.rss_mib < high - TRIM_GROWTH_MIB / 2, (high, usage.rss_mib)
    assert len(kept) == 1875
    budget.sample()  # no new growth: no second trim
    assert budget.heap_trims == 1


_ARENA_CHURN = """
import ctypes, sys, threading
from vigil.agent.budget import limit_heap_arenas
if sys.argv[1] == "capped" and not limit_heap_arenas(1):
    sys.exit(3)
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def churn():  # ctypes lets go of the GIL in each call: the threads contend for the heap
    for _ in range(20000):
        libc.free(libc.malloc(4096))
threads = [threading.Thread(target=churn) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
libc.malloc_stats()  # one "Arena n:" block per arena, on stderr
"""


def test_heap_arenas_are_capped_where_glibc_runs_the_agent() -> None:
    import subprocess
    import sys

    def arenas(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", _ARENA_CHURN, mode], capture_output=True, text=True, check=False)
        if out.returncode == 3 or "Arena" not in out.stderr:
            pytest.skip("not glibc: no mallopt or malloc_stats")
        return sum(line.startswith("Arena ") for line in out.stderr.splitlines())

    if arenas("free") < 2:
        pytest.skip("four contending threads did not make glibc open a second arena here")
    assert arenas("capped") == 1
