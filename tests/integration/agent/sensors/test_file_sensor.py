"""The file sensor against the real kernel: create, modify, rename, delete, each with the acting process."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.agent.conftest import ListSink
from tests.integration.agent.support import wait_for
from vigil.agent.clock import SystemClock
from vigil.agent.config import AgentConfig
from vigil.agent.sensors.base import HealthState, SensorContext
from vigil.agent.sensors.file import FileSensor
from vigil.agent.sensors.process import ProcessSensor

pytestmark = [pytest.mark.root, pytest.mark.requires_fanotify, pytest.mark.requires_proc_connector,
              pytest.mark.requires_audit]


@pytest.fixture
def sensors(tmp_path: Path, sink: ListSink) -> Iterator[tuple[Path, ListSink]]:
    watched = tmp_path / "watched"
    (watched / "noisy").mkdir(parents=True)
    config = AgentConfig(state_dir=tmp_path / "state", file_paths=(str(watched),),
                         file_exclude_paths=(str(watched / "noisy") + "/",))
    ctx = SensorContext(sink, SystemClock(), config)
    process, files = ProcessSensor(ctx), FileSensor(ctx)
    assert process.start().state is HealthState.ACTIVE
    assert files.start().state is HealthState.ACTIVE, files.health()
    try:
        yield watched, sink
    finally:
        files.stop()
        process.stop()


def run(*argv: str) -> int:
    p = subprocess.Popen(argv)
    assert p.wait() == 0
    return p.pid


def file_rows(sink: ListSink) -> list[dict]:  # type: ignore[type-arg]
    return [r for r in sink.snapshot() if r["table"] == "DeviceFileEvents"]


def test_each_change_is_reported_with_the_process_that_made_it(sensors: tuple[Path, ListSink]) -> None:
    d, sink = sensors
    f, g = d / "report.txt", d / "report-final.txt"
    created = run("sh", "-c", f"echo draft > {f}")
    modified = run("sh", "-c", f"echo more >> {f}")
    renamed = run("mv", str(f), str(g))
    deleted = run("rm", str(g))
    expected = {("FileCreated", str(f), created), ("FileModified", str(f), modified),
                ("FileRenamed", str(g), renamed), ("FileDeleted", str(g), deleted)}
    seen = lambda: {(r["ActionType"], r["FolderPath"], r["InitiatingProcessId"]) for r in file_rows(sink)}  # noqa: E731
    assert wait_for(lambda: expected <= seen(), 10), f"missing {expected - seen()}"
    rows = {r["ActionType"]: r for r in file_rows(sink)}
    assert rows["FileCreated"]["FileName"] == "report.txt"
    assert rows["FileCreated"]["InitiatingProcessCommandLine"] == f"sh -c 'echo draft > {f}'"
    assert rows["FileCreated"]["InitiatingProcessParentId"] == os.getpid()
    assert rows["FileRenamed"]["PreviousFolderPath"] == str(f)
    assert rows["FileRenamed"]["PreviousFileName"] == "report.txt"
    assert rows["FileRenamed"]["InitiatingProcessFileName"] == "mv"
    assert rows["FileRenamed"]["InitiatingProcessCommandLine"] == f"mv {f} {g}"
    assert rows["FileDeleted"]["InitiatingProcessFileName"] == "rm"
    assert rows["FileModified"]["FileSize"] == len("draft\nmore\n")


def test_excluded_paths_and_the_agents_own_writes_are_not_reported(sensors: tuple[Path, ListSink]) -> None:
    d, sink = sensors
    run("sh", "-c", f"echo x > {d / 'noisy' / 'a.log'}")
    (d / "mine.txt").write_text("written by the agent's own process")
    marker = d / "marker"
    marker_pid = run("touch", str(marker))
    assert wait_for(lambda: any(r["InitiatingProcessId"] == marker_pid for r in file_rows(sink)), 10)
    paths = {r["FolderPath"] for r in file_rows(sink)}
    assert str(marker) in paths
    assert not any("noisy" in p for p in paths)
    assert str(d / "mine.txt") not in paths
