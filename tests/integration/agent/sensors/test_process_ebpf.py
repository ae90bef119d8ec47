"""The process sensor's eBPF provider against the real kernel: every exec with full argv, parent and exit."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.agent.conftest import ListSink
from tests.integration.agent.support import wait_for
from vigil.agent.clock import SystemClock
from vigil.agent.config import AgentConfig
from vigil.agent.sensors.base import HealthState, SensorContext
from vigil.agent.sensors.process import ProcessSensor

pytestmark = [pytest.mark.root]

TRUE_SHA = hashlib.sha256(Path("/bin/true").read_bytes()).hexdigest()


def ebpf_sensor(tmp_path: Path, sink: ListSink, **config: Any) -> tuple[ProcessSensor, SensorContext]:
    ctx = SensorContext(sink, SystemClock(), AgentConfig(state_dir=tmp_path, process_provider="ebpf", **config))
    sensor = ProcessSensor(ctx)
    health = sensor.start()
    assert health.state is HealthState.ACTIVE, str(health)
    assert "provider eBPF" in health.reason
    return sensor, ctx


def rows_of(sink: ListSink, action: str, pids: set[int]) -> list[dict[str, Any]]:
    return [r for r in sink.snapshot() if r["ActionType"] == action and r["ProcessId"] in pids]


@pytest.mark.requires_bpf_tp_btf
def test_a_thousand_short_processes_arrive_once_each_with_full_command_lines(tmp_path: Path, sink: ListSink) -> None:
    sensor, _ = ebpf_sensor(tmp_path, sink)
    expected: dict[int, str] = {}
    marker = f"vigil-ebpf-{os.getpid()}"
    try:
        for i in range(1000):
            p = subprocess.Popen(["/bin/true", f"{marker}-{i}", "--flag=a b"])
            p.wait()
            expected[p.pid] = f"/bin/true {marker}-{i} '--flag=a b'"
        wait_for(lambda: len(rows_of(sink, "ProcessCreated", set(expected))) >= 1000, 20)
    finally:
        sensor.stop()
    created = rows_of(sink, "ProcessCreated", set(expected))
    by_pid: dict[int, dict[str, Any]] = {}
    twice = [r["ProcessId"] for r in created if by_pid.setdefault(r["ProcessId"], r) is not r]
    assert not twice, f"{len(twice)} execs reported more than once"
    assert len(by_pid) == 1000, f"{1000 - len(by_pid)} of 1,000 execs missing"
    wrong = {pid: (by_pid[pid]["ProcessCommandLine"], cmd) for pid, cmd in expected.items()
             if by_pid[pid]["ProcessCommandLine"] != cmd}
    assert not wrong, f"{len(wrong)} command lines differ, e.g. {next(iter(wrong.values()))}"
    me = os.getpid()
    for row in by_pid.values():
        assert row["InitiatingProcessId"] == me, row
        assert row["InitiatingProcessFileName"] == Path(os.readlink("/proc/self/exe")).name
        assert row["FolderPath"] == str(Path("/bin/true").resolve()) and row["SHA256"] == TRUE_SHA
        assert row["AccountName"] == "root" and row["ProcessPosixUserId"] == 0
        assert row["AdditionalFields"] == {"Source": "ebpf"}
    ended = rows_of(sink, "ProcessTerminated", set(expected))
    assert len(ended) == 1000 and {r["ProcessId"] for r in ended} == set(expected)
    assert sensor.health().state is HealthState.ACTIVE, str(sensor.health())  # nothing dropped or failed


@pytest.mark.requires_bpf_tp_btf
def test_a_process_gone_at_once_still_has_argv_cwd_user_and_its_exit(tmp_path: Path, sink: ListSink) -> None:
    work = tmp_path / "work dir"
    work.mkdir()
    long_args = [f"arg{i:03d}-" + "x" * 20 for i in range(100)]  # about 2.6 KiB of argv
    sensor, _ = ebpf_sensor(tmp_path, sink)
    try:
        quick = subprocess.Popen(["/bin/sh", "-c", "exit 7", "sh", *long_args], cwd=work, user=65534, group=65534)
        quick.wait()
        huge = subprocess.Popen(["/bin/true", *(["y" * 100] * 60)])  # 6 KiB: more than the 4 KiB kept
        huge.wait()
        sleeper = subprocess.Popen(["sleep", "30"])
        wait_for(lambda: rows_of(sink, "ProcessCreated", {sleeper.pid}), 10)
        sleeper.send_signal(signal.SIGKILL)
        sleeper.wait()
        pids = {quick.pid, huge.pid, sleeper.pid}
        wait_for(lambda: len(rows_of(sink, "ProcessTerminated", pids)) == 3, 10)
    finally:
        sensor.stop()
    created = {r["ProcessId"]: r for r in rows_of(sink, "ProcessCreated", pids)}
    ended = {r["ProcessId"]: r for r in rows_of(sink, "ProcessTerminated", pids)}
    q = created[quick.pid]
    assert q["ProcessCommandLine"] == "/bin/sh -c 'exit 7' sh " + " ".join(long_args)
    assert q["ProcessCurrentWorkingDirectory"] == str(work.resolve())
    assert q["ProcessPosixUserId"] == 65534 and q["AccountName"] == "nobody"
    assert q["FolderPath"] == str(Path("/bin/sh").resolve())
    assert ended[quick.pid]["AdditionalFields"] == {"ExitCode": 7, "Signal": 0}
    h = created[huge.pid]
    assert h["AdditionalFields"] == {"Source": "ebpf", "CommandLineTruncated": True}
    assert h["ProcessCommandLine"].startswith("/bin/true " + "y" * 100)
    assert 4000 < len(h["ProcessCommandLine"]) <= 4096
    assert ended[sleeper.pid]["AdditionalFields"] == {"ExitCode": 0, "Signal": signal.SIGKILL}


@pytest.mark.requires_bpf_tp_btf
def test_threads_are_not_processes_and_the_directory_still_describes_pids(tmp_path: Path, sink: ListSink) -> None:
    sensor, ctx = ebpf_sensor(tmp_path, sink)
    code = "import threading; ts = [threading.Thread(target=sum, args=([1],)) for _ in range(8)];" \
           " [t.start() for t in ts]; [t.join() for t in ts]; import sys; sys.stdin.read()"
    try:
        p = subprocess.Popen([sys.executable, "-c", code, "vigil-threads"], stdin=subprocess.PIPE)
        assert wait_for(lambda: rows_of(sink, "ProcessCreated", {p.pid}), 10)
        # Other sensors ask the shared directory about a pid: the eBPF rows answer, no /proc read.
        info = ctx.processes.describe(p.pid)
        assert info is not None and info.command_line.endswith("vigil-threads")
        assert info.ppid == os.getpid()
        assert p.stdin is not None
        p.stdin.close()
        p.wait()
        assert wait_for(lambda: rows_of(sink, "ProcessTerminated", {p.pid}), 10)
        described = ctx.processes.describe(p.pid)  # gone, but still known to the sensor for a while
        assert described is not None and described.command_line == info.command_line
    finally:
        sensor.stop()
    assert len(rows_of(sink, "ProcessCreated", {p.pid})) == 1
    assert len(rows_of(sink, "ProcessTerminated", {p.pid})) == 1  # eight threads ended, one process


@pytest.mark.requires_proc_connector
def test_without_the_object_the_sensor_falls_back_to_the_proc_connector_and_says_why(
        tmp_path: Path, sink: ListSink) -> None:
    missing = tmp_path / "nowhere" / "process.bpf.o"
    config = AgentConfig(state_dir=tmp_path, use_audit=False, bpf_object_path=missing)
    sensor = ProcessSensor(SensorContext(sink, SystemClock(), config))
    health = sensor.start()
    try:
        assert health.state is not HealthState.UNAVAILABLE, str(health)
        assert health.reason.startswith("provider proc connector; eBPF unavailable: open "), health.reason
        assert str(missing) in health.reason and "not built" in health.reason
        p = subprocess.Popen(["/bin/true"])
        p.wait()
        assert wait_for(lambda: rows_of(sink, "ProcessCreated", {p.pid}), 10)
    finally:
        sensor.stop()
    assert rows_of(sink, "ProcessCreated", {p.pid})[0]["AdditionalFields"] == {"Source": "procfs"}


def test_forcing_ebpf_without_the_object_leaves_the_sensor_unavailable_with_the_reason(
        tmp_path: Path, sink: ListSink) -> None:
    missing = tmp_path / "process.bpf.o"
    config = AgentConfig(state_dir=tmp_path, process_provider="ebpf", bpf_object_path=missing)
    sensor = ProcessSensor(SensorContext(sink, SystemClock(), config))
    health = sensor.start()
    sensor.stop()
    assert health.state is HealthState.UNAVAILABLE
    assert health.reason.startswith(f"eBPF unavailable but process_provider = ebpf: open {missing}: ")
    assert sensor.probe().state is HealthState.UNAVAILABLE
