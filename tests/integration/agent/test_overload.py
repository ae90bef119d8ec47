"""Beyond its budget the agent aggregates and drops, and every such event is counted: nothing silent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.agent.support import wait_for
from vigil.agent.budget import DROP_AGGREGATED, Budget, BudgetLimits
from vigil.agent.clock import SystemClock
from vigil.agent.config import AgentConfig
from vigil.agent.sensors.base import HealthState, SensorContext
from vigil.agent.sensors.file import FileSensor
from vigil.agent.spool import Spool

pytestmark = [pytest.mark.root, pytest.mark.requires_fanotify]

N_FILES = 3000
WRITER = """
import os, sys
root = sys.argv[1]
for i in range(int(sys.argv[2])):
    d = os.path.join(root, f"d{i % 40}")
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, f"f{i}"), "w").close()
"""


def test_file_flood_over_the_rate_is_aggregated_and_dropped_with_counts(tmp_path: Path) -> None:
    flood = tmp_path / "flood"
    flood.mkdir()
    spool = Spool(tmp_path / "spool.db", SystemClock())
    # 200 rows/s, summaries for at most 10 (action, process, folder) keys: 40 folders overflow it.
    limits = BudgetLimits(rate_limits=(("file", 200.0),), max_aggregate_keys=10, aggregate_seconds=0.5)
    config = AgentConfig(state_dir=tmp_path / "state", file_paths=(str(flood),), budget=limits)
    sensor = FileSensor(SensorContext(spool, SystemClock(), config, budget=Budget(limits, losses=spool)))
    assert sensor.start().state is HealthState.ACTIVE
    try:
        subprocess.run([sys.executable, "-c", WRITER, str(flood), str(N_FILES)], check=True)
        wait_for(lambda: sensor._gate is not None and sensor._gate.passed + sensor._gate.folded
                 + sensor._gate.dropped >= N_FILES, 15)
    finally:
        sensor.stop()
    counters = spool.counters()
    rows = [json.loads(b) for (b,) in spool._db.execute("SELECT body FROM events").fetchall()]
    created = [r for r in rows if r["ActionType"] == "FileCreated"]
    represented = sum((r.get("AdditionalFields") or {}).get("AggregatedCount", 1) for r in created)
    dropped = counters.dropped
    assert dropped.get(DROP_AGGREGATED, 0) > 0 and dropped.get("rate_limit.file", 0) > 0, dropped
    # Every create is a row, folded into a summary row, or a counted drop (or lost in a counted overflow).
    lost_in_kernel = dropped.get("kernel_overflow", 0)
    assert represented + dropped["rate_limit.file"] == N_FILES or lost_in_kernel, (represented, dropped)
    assert represented == len(created) + dropped[DROP_AGGREGATED]
    assert counters.produced == counters.spooled + sum(dropped.values())
    assert counters.spooled == len(rows)
    spool.close()
