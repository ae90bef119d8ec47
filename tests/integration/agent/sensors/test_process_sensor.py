"""The process sensor against the real kernel: every short-lived exec, with argv, parent and hash."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from tests.integration.agent.conftest import ListSink
from tests.integration.agent.support import wait_for
from vigil.agent.clock import SystemClock
from vigil.agent.config import AgentConfig
from vigil.agent.sensors.audit_netlink import AuditControl, rule_key_for
from vigil.agent.sensors.base import HealthState, SensorContext
from vigil.agent.sensors.process import ProcessSensor

pytestmark = [pytest.mark.root, pytest.mark.usefixtures("proc_connector_available")]

TRUE_SHA = hashlib.sha256(Path("/bin/true").read_bytes()).hexdigest()
SH_SHA = hashlib.sha256(Path("/bin/sh").resolve().read_bytes()).hexdigest()



def our_rules() -> list[str]:
    with AuditControl() as ctl:
        return [r.key for r in ctl.list_rules() if r.key == rule_key_for(os.getpid())]


def spawn_and_collect(sensor: ProcessSensor, sink: ListSink) -> tuple[list[int], int]:
    health = sensor.start()
    assert health.state is not HealthState.UNAVAILABLE, str(health)
    try:
        pids = []
        for _ in range(200):
            p = subprocess.Popen(["/bin/true"])
            p.wait()
            pids.append(p.pid)
        sh = subprocess.Popen(["sh", "-c", "sleep 0.1"])
        sh.wait()
        wanted = set(pids) | {sh.pid}
        wait_for(lambda: wanted <= {r["ProcessId"] for r in sink.snapshot() if r["ActionType"] == "ProcessCreated"})
    finally:
        sensor.stop()
    return pids, sh.pid


def test_every_exec_has_argv_parent_and_hash(tmp_path: Path, sink: ListSink) -> None:
    config = AgentConfig(state_dir=tmp_path, process_provider="proc_connector")
    sensor = ProcessSensor(SensorContext(sink, SystemClock(), config))
    pids, sh_pid = spawn_and_collect(sensor, sink)
    if sensor.health().state is not HealthState.ACTIVE:
        pytest.skip(f"audit enrichment unavailable here: {sensor.health()}")
    created = {r["ProcessId"]: r for r in sink.snapshot() if r["ActionType"] == "ProcessCreated"}
    me = os.getpid()
    missing = [p for p in pids if p not in created]
    assert not missing, f"{len(missing)} of 200 /bin/true execs not reported"
    for pid in pids:
        row = created[pid]
        assert row["ProcessCommandLine"] == "/bin/true", row
        assert row["InitiatingProcessId"] == me, row
        assert row["SHA256"] == TRUE_SHA, row
        assert row["FileName"] == "true" and row["FolderPath"].endswith("/true")
        assert row["AccountName"] == "root" and row["ProcessPosixUserId"] == 0
        assert row["InitiatingProcessCommandLine"] and "python" in row["InitiatingProcessFileName"]
    sh = created[sh_pid]
    assert sh["ProcessCommandLine"] == "sh -c 'sleep 0.1'"
    assert sh["InitiatingProcessId"] == me and sh["SHA256"] == SH_SHA
    sleeps = [r for r in created.values() if r["ProcessCommandLine"] == "sleep 0.1"]
    assert sleeps and sleeps[-1]["InitiatingProcessFileName"] in ("dash", "sh", "bash")
    terminated = {r["ProcessId"] for r in sink.snapshot() if r["ActionType"] == "ProcessTerminated"}
    assert set(pids) <= terminated
    assert our_rules() == [], "the agent's audit rule must be removed on stop"


def test_without_audit_every_exec_is_still_seen_with_its_parent(tmp_path: Path, sink: ListSink) -> None:
    config = AgentConfig(state_dir=tmp_path, use_audit=False, process_provider="proc_connector")
    sensor = ProcessSensor(SensorContext(sink, SystemClock(), config))
    pids, _ = spawn_and_collect(sensor, sink)
    assert sensor.health().state is HealthState.DEGRADED
    assert "audit disabled" in sensor.health().reason
    created = {r["ProcessId"]: r for r in sink.snapshot() if r["ActionType"] == "ProcessCreated"}
    assert all(p in created for p in pids)
    assert all(created[p]["InitiatingProcessId"] == os.getpid() for p in pids)
