"""Loading reports every broken rule with its file and reason, and still loads the rest."""

from __future__ import annotations

from pathlib import Path

from tests.unit.detect.support import SYSMON, rule_yaml
from vigil.detect import ErrorKind, load_rules

GOOD = rule_yaml("selection:\n  CommandLine|contains: 'good'\ncondition: selection", title="Good")


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_broken_rules_are_reported_and_the_rest_load(tmp_path: Path) -> None:
    _write(tmp_path, "good.yml", GOOD)
    bad_yaml = _write(tmp_path, "sub/bad_yaml.yml", "title: x\ndetection: [unclosed\n")
    bad_modifier = _write(tmp_path, "sub/bad_modifier.yml",
                          rule_yaml("selection:\n  CommandLine|nosuch: x\ncondition: selection"))
    bad_condition = _write(tmp_path, "bad_condition.yml",
                           rule_yaml("selection:\n  CommandLine: x\ncondition: selection and missing"))
    placeholder = _write(tmp_path, "placeholder.yml",
                         rule_yaml("selection:\n  User|expand: '%admins%'\ncondition: selection"))
    report = load_rules([tmp_path])
    assert report.files == 5
    assert [r.title for r in report.ruleset.rules] == ["Good"]
    by_path = {e.path: e for e in report.errors}
    assert set(by_path) == {bad_yaml, bad_modifier, bad_condition, placeholder}
    assert by_path[bad_yaml].kind is ErrorKind.READ and (by_path[bad_yaml].line, by_path[bad_yaml].column) == (3, 1)
    assert "flow sequence at line 2, column 12" in by_path[bad_yaml].reason  # where the unclosed '[' opens
    assert by_path[bad_modifier].kind is ErrorKind.PARSE and "nosuch" in by_path[bad_modifier].reason
    assert "missing" in by_path[bad_condition].reason
    assert by_path[placeholder].kind is ErrorKind.PLACEHOLDER and "%admins%" in by_path[placeholder].reason
    assert str(bad_modifier) in str(by_path[bad_modifier])
    hits = report.ruleset.match_windows({"Channel": SYSMON, "EventID": 1, "CommandLine": "good"})
    assert [h.title for h in hits] == ["Good"]


def test_correlation_rules_load_across_files_and_unsupported_ones_are_reported(tmp_path: Path) -> None:
    base_id = "5d7e3f9a-1111-4222-8333-444455556666"
    text = rule_yaml("selection:\n  CommandLine: x\ncondition: selection", rule_id=base_id,
                     title="Base") + "name: base_rule\n---\n" + f"""title: Many
id: 0f1e2d3c-aaaa-4bbb-8ccc-ddddeeeeffff
correlation:
    type: event_count
    rules:
        - {base_id}
    group-by:
        - User
    timespan: 5m
    condition:
        gte: 10
"""
    path = _write(tmp_path, "corr.yml", text)
    report = load_rules([path])
    assert [r.title for r in report.ruleset.rules] == ["Base"]
    assert not report.errors
    [corr] = report.ruleset.correlations
    assert (corr.info.title, corr.rules, corr.group_by, corr.timespan, corr.count) == (
        "Many", (base_id,), ("User",), 300.0, 10.0)
    # A correlation in another file, referencing the base rule by name; a sum correlation is unsupported.
    other = _write(tmp_path, "other.yml", text.split("---\n", 1)[1].replace("0f1e2d3c", "0f1e2d3d")
                   .replace(f"- {base_id}", "- base_rule").replace("title: Many", "title: Other"))
    summed = _write(tmp_path, "sum.yml", text.split("---\n", 1)[1].replace("0f1e2d3c", "0f1e2d3e")
                    .replace("event_count", "value_sum").replace("gte: 10", "gte: 10\n        field: Bytes"))
    report = load_rules([tmp_path])
    assert sorted(c.info.title for c in report.ruleset.correlations) == ["Many", "Other"]
    [err] = report.errors
    assert err.kind is ErrorKind.UNSUPPORTED and "value_sum" in err.reason and err.path == summed
    assert other.exists()


def test_missing_path_and_duplicate_ids(tmp_path: Path) -> None:
    rid = "11111111-2222-4333-8444-555555555555"
    _write(tmp_path, "a.yml", rule_yaml("s:\n  User: a\ncondition: s", rule_id=rid))
    dup = _write(tmp_path, "b.yml", rule_yaml("s:\n  User: b\ncondition: s", rule_id=rid))
    report = load_rules([tmp_path, tmp_path / "nope"])
    assert len(report.ruleset) == 1
    kinds = {(e.kind, e.path) for e in report.errors}
    assert (ErrorKind.DUPLICATE, dup) in kinds
    assert (ErrorKind.READ, tmp_path / "nope") in kinds


def test_rule_without_event_source_loads_with_a_note(tmp_path: Path) -> None:
    path = _write(tmp_path, "unseen.yml", rule_yaml("s:\n  type: EXECVE\ncondition: s",
                                                    logsource="product: linux\nservice: unseen"))
    report = load_rules([path])
    assert report.ok and len(report.ruleset) == 1
    assert len(report.notes) == 1 and "service 'unseen'" in report.notes[0].reason
