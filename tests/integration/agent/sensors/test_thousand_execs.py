"""1,000 short processes → 1,000 ProcessCreated rows, each with its full command line (proc connector + audit)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.integration.agent.conftest import ListSink
from tests.integration.agent.support import wait_for
from vigil.agent.clock import SystemClock
from vigil.agent.config import AgentConfig
from vigil.agent.sensors.base import HealthState, SensorContext
from vigil.agent.sensors.process import ProcessSensor

pytestmark = [pytest.mark.root, pytest.mark.requires_proc_connector, pytest.mark.requires_audit]


def test_a_thousand_short_processes_all_arrive_with_full_command_lines(tmp_path: Path, sink: ListSink) -> None:
    config = AgentConfig(state_dir=tmp_path, process_provider="proc_connector")
    sensor = ProcessSensor(SensorContext(sink, SystemClock(), config))
    assert sensor.start().state is HealthState.ACTIVE, sensor.health()
    expected: dict[int, str] = {}
    try:
        for i in range(1000):
            argv = ["/bin/true", f"vigil-run-{i}", "--flag=a b"]
            p = subprocess.Popen(argv)
            p.wait()
            expected[p.pid] = f"/bin/true vigil-run-{i} '--flag=a b'"

        def created() -> dict[int, str]:
            return {r["ProcessId"]: r["ProcessCommandLine"] for r in sink.snapshot()
                    if r["ActionType"] == "ProcessCreated" and r["ProcessId"] in expected}

        wait_for(lambda: len(created()) == 1000, 20)
    finally:
        sensor.stop()
    got = created()
    assert len(got) == 1000, f"{1000 - len(got)} of 1,000 execs missing"
    wrong = {pid: (got[pid], cmd) for pid, cmd in expected.items() if got[pid] != cmd}
    assert not wrong, f"{len(wrong)} command lines differ, e.g. {next(iter(wrong.values()))}"
