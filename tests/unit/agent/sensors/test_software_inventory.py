"""The software inventory sensor on a fixture host: a full inventory first, then only diffs, also across a
restart (the state file); a package database change is noticed; rows pass the server's telemetry schema."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.unit.tvm.test_host_inventory import write_host
from vigil.agent.clock import SystemClock
from vigil.agent.config import AgentConfig
from vigil.agent.sensors.base import HealthState, SensorContext
from vigil.agent.sensors.software_inventory import SoftwareInventorySensor
from vigil.content.tvm_inventory import HostSources
from vigil.core.telemetry import validate_batch


class ListSink:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        self.rows += [dict(r) for r in rows]


def _sensor(tmp_path: Path, sink: ListSink, sources: HostSources) -> SoftwareInventorySensor:
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    ctx = SensorContext(sink=sink, clock=SystemClock(), config=AgentConfig(state_dir=state))
    return SoftwareInventorySensor(ctx, sources)


def test_full_then_diffs_then_restart(tmp_path: Path) -> None:
    sink = ListSink()
    src = write_host(tmp_path / "host")
    sensor = _sensor(tmp_path, sink, src)
    first = sensor.collect()
    assert len(first) == 1 and sensor.health().state is HealthState.ACTIVE
    f = first[0]["AdditionalFields"]
    assert (f["Full"], f["Base"], f["Generation"], f["Removed"]) == (True, None, 1, [])
    assert "pkg:pypi/requests@2.31.0" in f["Added"] and "pkg:npm/lodash@4.17.20" in f["Added"]
    assert "pkg:golang/stdlib@1.21.5" in f["Added"]
    assert not any("urllib3" in p for p in f["Added"])

    assert sensor.collect() == []  # nothing changed: nothing sent

    # pip upgrades requests, dpkg removes bash: one diff with exactly that
    site = tmp_path / "host/opt/app/venv/lib/python3.11/site-packages"
    (site / "requests-2.31.0.dist-info/METADATA").unlink()
    (site / "requests-2.31.0.dist-info").rmdir()
    (site / "requests-2.32.3.dist-info").mkdir()
    (site / "requests-2.32.3.dist-info/METADATA").write_text("Name: requests\nVersion: 2.32.3\n")
    status = tmp_path / "host/status"
    status.write_text(status.read_text().split("\n\nPackage: bash")[0] + "\n")
    assert sensor._changed()
    diff = sensor.collect()[0]["AdditionalFields"]
    assert (diff["Full"], diff["Base"], diff["Generation"], diff["Series"]) == (False, 1, 2, f["Series"])
    assert diff["Added"] == ["pkg:pypi/requests@2.32.3"]
    assert sorted(diff["Removed"]) == ["pkg:deb/debian/bash@5.2.15-2?distro=debian-12",
                                       "pkg:pypi/requests@2.31.0"]
    assert not sensor._changed()

    # a restarted agent continues the series with a diff, and a full inventory when one is due
    again = _sensor(tmp_path, sink, src)
    assert again.collect() == []
    (tmp_path / "host/srv/web/node_modules/lodash/package.json").write_text('{"name":"lodash","version":"4.17.21"}')
    d3 = again.collect()[0]["AdditionalFields"]
    assert (d3["Base"], d3["Generation"], d3["Added"], d3["Removed"]) == (
        2, 3, ["pkg:npm/lodash@4.17.21"], ["pkg:npm/lodash@4.17.20"])
    full = again.collect(full=True)[0]["AdditionalFields"]
    assert (full["Full"], full["Generation"], full["Series"]) == (True, 4, f["Series"])
    assert "pkg:pypi/requests@2.32.3" in full["Added"]

    rows = [{**r, "DeviceId": "dev-1", "ReportId": i + 1} for i, r in enumerate(sink.rows)]
    batch = validate_batch(rows, "dev-1", None)
    assert not batch.rejected and len(batch.rows["DeviceEvents"]) == len(sink.rows)


def test_a_broken_state_file_starts_a_new_series(tmp_path: Path) -> None:
    sink = ListSink()
    s = _sensor(tmp_path, sink, write_host(tmp_path / "host"))
    series = s.collect()[0]["AdditionalFields"]["Series"]
    (tmp_path / "state/software_inventory.json").write_text("{not json")
    again = s.collect()[0]["AdditionalFields"]
    assert again["Full"] and again["Generation"] == 1 and again["Series"] != series


def test_a_malformed_source_degrades_health_and_the_rest_is_sent(tmp_path: Path) -> None:
    src = write_host(tmp_path / "host")
    bad = tmp_path / "host/opt/x/site-packages/bad-1.0.dist-info"
    bad.mkdir(parents=True)
    (bad / "METADATA").write_text("Name: bad\n")  # no Version
    s = _sensor(tmp_path, ListSink(), src)
    rows = s.collect()
    assert "pkg:pypi/requests@2.31.0" in rows[0]["AdditionalFields"]["Added"]
    assert s.health().state is HealthState.DEGRADED and "bad-1.0.dist-info/METADATA" in s.health().reason
