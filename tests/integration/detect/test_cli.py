"""`vigil triage` and `vigil rules` end to end, through the real CLI, over self-made fixtures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.unit.detect.support import SYSMON, rule_yaml
from vigil.cli import app

RULE_ID = "3c1d5e7f-9a2b-4c6d-8e0f-112233445566"


def _fixtures(tmp_path: Path) -> tuple[Path, Path]:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "whoami.yml").write_text(rule_yaml(
        "selection:\n  CommandLine|contains: 'whoami'\ncondition: selection", rule_id=RULE_ID,
        title="Whoami run", level="medium"))
    (rules / "low.yml").write_text(rule_yaml(
        "selection:\n  CommandLine|contains: 'dir'\ncondition: selection", title="Dir run", level="low",
        tags=("attack.discovery",)))
    events = tmp_path / "events"
    events.mkdir()
    lines = [
        {"Channel": SYSMON, "EventID": 1, "Computer": "ws1", "TimeCreated_SystemTime": "2026-01-01T00:00:01Z",
         "CommandLine": "cmd /c whoami /all"},
        {"Channel": SYSMON, "EventID": 1, "Computer": "ws1", "TimeCreated_SystemTime": "2026-01-01T00:00:02Z",
         "CommandLine": "cmd /c dir"},
        {"Channel": SYSMON, "EventID": 1, "Computer": "ws2", "CommandLine": "notepad"},
        {"Event": {"System": {"Channel": SYSMON, "EventID": 1, "Computer": "ws3"},
                   "EventData": {"CommandLine": "WHOAMI"}}},
    ]
    (events / "a.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    (events / "b.jsonl").write_text(json.dumps(lines[0]) + "\n")
    return rules, events


def test_triage_jsonl_output_and_summary(tmp_path: Path) -> None:
    rules, events = _fixtures(tmp_path)
    result = CliRunner().invoke(app, ["triage", str(events), "--rules", str(rules), "-o", "jsonl", "-j", "1"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert sorted((r["host"], r["rule"]) for r in records) == [
        ("ws1", "Dir run"), ("ws1", "Whoami run"), ("ws1", "Whoami run"), ("ws3", "Whoami run")]
    whoami = next(r for r in records if r["host"] == "ws3")
    assert whoami["rule_id"] == RULE_ID and whoami["fields"] == {"CommandLine": "WHOAMI"}
    assert "4 detections from 2 rules" in result.stderr


def test_triage_min_level_and_two_workers_in_a_subprocess(tmp_path: Path) -> None:
    rules, events = _fixtures(tmp_path)
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "vigil"), "triage", str(events), "--rules", str(rules),
         "--min-level", "medium", "-o", "csv", "-j", "2"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rows = proc.stdout.strip().splitlines()
    assert rows[0].startswith("timestamp,host,level,rule")
    assert len(rows) == 4 and all("Whoami run" in r for r in rows[1:])


def test_triage_reports_a_missing_input_without_traceback(tmp_path: Path) -> None:
    rules, _ = _fixtures(tmp_path)
    result = CliRunner().invoke(app, ["triage", str(tmp_path / "nope"), "--rules", str(rules)])
    assert result.exit_code == 2
    assert "nope: no such file or directory" in result.stderr
    assert "Traceback" not in result.output


def test_triage_reports_a_corrupt_jsonl_file(tmp_path: Path) -> None:
    rules, events = _fixtures(tmp_path)
    (events / "bad.jsonl").write_text('{"Channel": 1}\nnot json\n')
    result = CliRunner().invoke(app, ["triage", str(events), "--rules", str(rules), "-j", "1"])
    assert result.exit_code == 1
    assert "bad.jsonl: line 2: invalid JSON" in result.stderr


def test_rules_check_exit_codes(tmp_path: Path) -> None:
    rules, _ = _fixtures(tmp_path)
    ok = CliRunner().invoke(app, ["rules", "check", str(rules)])
    assert ok.exit_code == 0 and "2 rules loaded, 0 failed" in ok.stdout
    (rules / "broken.yml").write_text(rule_yaml("selection:\n  X|bogus: 1\ncondition: selection"))
    bad = CliRunner().invoke(app, ["rules", "check", str(rules)])
    assert bad.exit_code == 1
    assert "broken.yml" in bad.stdout and "bogus" in bad.stdout


def test_rules_test_runs_the_builtin_linux_pack() -> None:
    result = CliRunner().invoke(app, ["rules", "test"])
    assert result.exit_code == 0, result.stdout
    assert "0 failed" in result.stdout


def test_rules_test_fails_on_a_wrong_expectation(tmp_path: Path) -> None:
    rules, _ = _fixtures(tmp_path)
    (rules / "tests").mkdir()
    (rules / "tests" / "golden.json").write_text(json.dumps({"cases": [
        {"name": "whoami", "event": {"Channel": SYSMON, "EventID": 1, "CommandLine": "whoami"}, "expect": []},
    ]}))
    result = CliRunner().invoke(app, ["rules", "test", str(rules)])
    assert result.exit_code == 1
    assert "unexpected " + RULE_ID in result.stdout.replace("\n", "")


def test_warm_triage_imports_neither_pysigma_nor_the_server(tmp_path: Path) -> None:
    """Start-up cost is part of `vigil triage`: a warm run loads only the CLI, typer and the engine."""
    rules, events = _fixtures(tmp_path)
    cache = tmp_path / "cache"
    script = (
        "import sys\n"
        "from vigil.cli import app\n"
        f"args = ['triage', {str(events)!r}, '--rules', {str(rules)!r}, '--cache', {str(cache)!r}, '-o', 'jsonl']\n"
        "try:\n"
        "    app(args)\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "heavy = sorted({m.split('.')[0] if not m.startswith('vigil.') else '.'.join(m.split('.')[:2])\n"
        "                for m in sys.modules} & {'sigma', 'yaml', 'rich', 'sqlalchemy', 'fastapi', 'vigil.server',\n"
        "                                         'vigil.agent', 'vigil.store'})\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    run = [sys.executable, "-c", script]
    cold = subprocess.run(run, capture_output=True, text=True, timeout=120, check=False)
    assert cold.returncode == 0, cold.stderr
    assert "'sigma'" in cold.stderr  # the cold run compiles with pySigma
    warm = subprocess.run(run, capture_output=True, text=True, timeout=120, check=False)
    assert warm.returncode == 0, warm.stderr
    assert "HEAVY []" in warm.stderr, warm.stderr


def _filter_and_placeholder_fixtures(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    """The whoami rule; a rule needing %admins%; a filter folder apart from the rules; a placeholder file."""
    rules, events = _fixtures(tmp_path)
    (rules / "admins.yml").write_text(rule_yaml(
        "selection:\n  User|expand: '%admins%'\ncondition: selection", title="Admin run", level="high",
        rule_id="4d2e6f80-ab3c-4d7e-9f10-223344556677"))
    filters = tmp_path / "filters"
    filters.mkdir()
    (filters / "mf_ws1.yml").write_text(
        "title: Not on ws1\nid: 5e3f7091-bc4d-4e8f-a021-334455667788\nlogsource:\n    product: windows\n"
        f"filter:\n    rules:\n        - {RULE_ID}\n    selection:\n        Computer: ws1\n"
        "    condition: not selection\n")
    (events / "c.jsonl").write_text(json.dumps(
        {"Channel": SYSMON, "EventID": 1, "Computer": "ws4", "CommandLine": "hostname", "User": "ADMIN7"}) + "\n")
    values = tmp_path / "placeholders.toml"
    values.write_text('admins = ["root", "admin7"]\n')
    return rules, events, filters, values


def test_triage_with_a_filter_folder_and_placeholders(tmp_path: Path) -> None:
    rules, events, filters, values = _filter_and_placeholder_fixtures(tmp_path)
    result = CliRunner().invoke(app, ["triage", str(events), "--rules", str(rules), "--rules", str(filters),
                                      "--placeholders", str(values), "-o", "jsonl", "-j", "1"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    # ws1's whoami events are filtered out (in a.jsonl and b.jsonl); ws3's stays; ADMIN7 is an admin.
    assert sorted((r["host"], r["rule"]) for r in records) == [
        ("ws1", "Dir run"), ("ws3", "Whoami run"), ("ws4", "Admin run")]
    assert "rule skipped" not in result.stderr
    without = CliRunner().invoke(app, ["triage", str(events), "--rules", str(rules), "-o", "jsonl", "-j", "1"])
    assert without.exit_code == 0, without.output
    assert "admins.yml" in without.stderr and "%admins%" in without.stderr  # the rule skipped, with why
    assert sum(line.startswith("{") for line in without.stdout.splitlines()) == 4  # no filter: ws1's whoami back


def test_rules_check_reports_missing_placeholders_and_broken_filters(tmp_path: Path) -> None:
    rules, _, filters, values = _filter_and_placeholder_fixtures(tmp_path)
    (filters / "mf_broken.yml").write_text(
        "title: Broken\nlogsource:\n    product: windows\nfilter:\n    rules: any\n    selection:\n"
        "        User: x\n    condition: not selection and nothing\n")
    bad = CliRunner().invoke(app, ["rules", "check", str(rules), str(filters)])
    assert bad.exit_code == 1
    out = bad.stdout.replace("\n", "")
    assert "admins.yml" in out and "placeholder" in out and "%admins%" in out
    assert "mf_broken.yml" in out and "nothing" in out
    good = CliRunner().invoke(app, ["rules", "check", str(rules), str(filters), "--placeholders", str(values)])
    assert good.exit_code == 1 and "3 rules loaded, 1 failed" in good.stdout  # only the broken filter left


def test_a_bad_placeholder_file_is_a_usage_error(tmp_path: Path) -> None:
    rules, events = _fixtures(tmp_path)
    values = tmp_path / "values.yml"
    values.write_text("admins: []\n")
    for args in (["triage", str(events), "--rules", str(rules)], ["rules", "check", str(rules)],
                 ["rules", "test", str(rules)]):
        result = CliRunner().invoke(app, [*args, "--placeholders", str(values)])
        assert result.exit_code == 2, (args, result.output)
        assert "values.yml" in result.stderr and "empty list" in result.stderr
        assert "Traceback" not in result.output


def test_rules_test_takes_placeholders(tmp_path: Path) -> None:
    rules, _, _, values = _filter_and_placeholder_fixtures(tmp_path)
    (rules / "tests").mkdir()
    (rules / "tests" / "golden.json").write_text(json.dumps({"cases": [
        {"name": "admin", "event": {"Channel": SYSMON, "EventID": 1, "User": "root"},
         "expect": ["4d2e6f80-ab3c-4d7e-9f10-223344556677"]},
    ]}))
    result = CliRunner().invoke(app, ["rules", "test", str(rules), "--placeholders", str(values)])
    assert result.exit_code == 0, result.stdout
    assert "1 cases, 1 passed" in result.stdout


def test_triage_says_when_it_matches_without_the_c_extension(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.unit.detect.support import ENGINE_MODULES
    from vigil.detect import ruleset

    rules, events = _fixtures(tmp_path)
    argv = ["triage", str(events), "--rules", str(rules), "-o", "jsonl", "-j", "1", "--no-cache"]
    if ruleset._speedups is not None:
        result = CliRunner().invoke(app, argv)
        assert result.exit_code == 0, result.output
        assert "slow path" not in result.stderr
    for module in ENGINE_MODULES:
        monkeypatch.setattr(module, "_speedups", None)
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    assert "slow path" in result.stderr and "4 detections from 2 rules" in result.stderr


def _damaged_evtx(tmp_path: Path) -> tuple[Path, Path]:
    from tests.unit.detect.evtx_writer import evtx_file, sysmon_events

    rules, _ = _fixtures(tmp_path)
    logs = tmp_path / "logs"
    logs.mkdir()
    intact = evtx_file(sysmon_events(150))
    (logs / "intact.evtx").write_bytes(intact)
    (logs / "cut.evtx").write_bytes(intact[:100_000])  # inside chunk 1
    return rules, logs


def test_triage_warns_about_a_damaged_evtx_file_and_hunts_its_intact_records(tmp_path: Path) -> None:
    rules, logs = _damaged_evtx(tmp_path)
    result = CliRunner().invoke(app, ["triage", str(logs), "--rules", str(rules), "-j", "1", "-o", "jsonl"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    warnings = [r for r in records if r.get("type") == "warning"]
    assert len(warnings) == 1 and warnings[0]["file"].endswith("cut.evtx")
    assert warnings[0]["records_read"] == 80 and warnings[0]["records_skipped"] == 30
    assert warnings[0]["first_error"].startswith("truncated: 100000 bytes, 1 of the header's 3 chunks whole")
    hunted = [r for r in records if "rule_id" in r]
    assert {r["file"].rsplit("/", 1)[1] for r in hunted} == {"intact.evtx", "cut.evtx"}
    assert sum(r["file"].endswith("cut.evtx") for r in hunted) == 80 // 7  # whoami every 7th record
    assert "damaged: " in result.stderr and "80 records read, 30 skipped, 616 bytes unreadable" in result.stderr
    assert "1 damaged files: 80 records recovered, 30 skipped" in result.stderr
    assert "230 events" in result.stderr


def test_triage_strict_makes_damage_an_error(tmp_path: Path) -> None:
    rules, logs = _damaged_evtx(tmp_path)
    result = CliRunner().invoke(app, ["triage", str(logs), "--rules", str(rules), "-j", "1", "--strict"])
    assert result.exit_code == 1
    assert "(--strict: exit status 1)" in result.stderr
    assert "Whoami run" in result.stdout  # the intact records were still hunted through
