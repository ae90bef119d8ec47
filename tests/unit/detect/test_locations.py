"""Rule errors say where: file, line and column of the key or value at fault, from pySigma's errors, the YAML
parser's marks and Vigil's own checks; a bug in lowering is raised, not reported as the rule's error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.unit.detect.support import rule_yaml
from vigil.cli import app
from vigil.detect import ErrorKind, RuleLoadError, load_rules, load_rules_text
from vigil.detect import loading as loading_module

GOOD_ID = "0a0a0a0a-1111-4222-8333-444455556666"


def _line_of(text: str, needle: str, nth: int = 0) -> tuple[int, int]:
    """1-based line and column of the `nth` occurrence of `needle` in `text`."""
    at = -1
    for _ in range(nth + 1):
        at = text.index(needle, at + 1)
    line = text.count("\n", 0, at) + 1
    return line, at - (text.rfind("\n", 0, at) + 1) + 1


def _only_error(text: str, path: Path | None = None) -> RuleLoadError:
    report = load_rules_text(text, path)
    assert len(report.errors) == 1, [str(e) for e in report.errors]
    return report.errors[0]


@pytest.mark.parametrize(("detection", "needle", "kind"), [
    ("selection:\n  CommandLine|nosuch: x\ncondition: selection", "CommandLine|nosuch", ErrorKind.PARSE),
    ("selection:\n  CommandLine: x\ncondition: selection and missing", "condition:", ErrorKind.PARSE),
    ("selection:\n  User|expand: '%admins%'\ncondition: selection", "'%admins%'", ErrorKind.PLACEHOLDER),
    ("selection:\n  Image: a\n  UtcTime|hour: 24\ncondition: selection", "UtcTime|hour", ErrorKind.PARSE),
    ("selection:\n  Image: a\n  CommandLine|re: '(unclosed'\ncondition: selection", "'(unclosed'",
     ErrorKind.PARSE),
    ("selection:\n  1: a\ncondition: selection", "1: a", ErrorKind.PARSE),
    ("selection:\n  Image: a\ncondition: 5", "condition: 5", ErrorKind.PARSE),
])
def test_a_detection_error_points_at_its_key_or_value(detection: str, needle: str, kind: ErrorKind) -> None:
    # The broken rule is the second document: the location is in the file, not in the document.
    text = rule_yaml("s:\n  Image: ok\ncondition: s", rule_id=GOOD_ID) + "---\n" + rule_yaml(detection)
    error = _only_error(text, Path("rules/broken.yml"))
    assert error.kind is kind
    assert (error.line, error.column) == _line_of(text, needle, nth=1 if needle == "condition:" else 0)
    assert str(error).startswith(f"rules/broken.yml:{error.line}:{error.column} [{error.rule_id}]: ")


@pytest.mark.parametrize(("key", "value"), [("level", "severe"), ("status", "done"), ("date", "yesterday"),
                                            ("tags", "[not a tag]"), ("logsource", "windows")])
def test_a_metadata_error_points_at_its_key(key: str, value: str) -> None:
    text = rule_yaml("s:\n  Image: a\ncondition: s")
    lines = [f"{key}: {value}" if line.startswith(f"{key}:") else line for line in text.splitlines()]
    if not any(line.startswith(f"{key}:") for line in text.splitlines()):
        lines.insert(2, f"{key}: {value}")
    text = "\n".join(lines) + "\n"
    # a logsource that is text, tags that are not lists: drop the indented block that followed the key
    text = "\n".join(ln for ln in text.splitlines() if not (ln.startswith("    - ") and key == "tags")
                     and not (ln.startswith("    product") and key == "logsource")
                     and not (ln.startswith("    category") and key == "logsource")) + "\n"
    report = load_rules_text(text, Path("x.yml"))
    assert report.errors, text
    for error in report.errors:
        assert (error.line, error.column) == _line_of(text, f"{key}:"), (str(error), text)


def test_yaml_errors_and_shapes_pysigma_does_not_check() -> None:
    error = _only_error("title: x\ndetection: [unclosed\n")
    assert (error.kind, error.line, error.column) == (ErrorKind.READ, 3, 1)
    assert "at line 2, column 12" in error.reason  # where the unclosed '[' opens
    error = _only_error("- a list\n- not a rule\n")
    assert (error.line, error.column) == (1, 1) and "mapping" in error.reason
    text = rule_yaml("s:\n  Image: a\ncondition: s").replace("id: ", "id: 5\nx: ", 1)
    error = _only_error(text)
    assert (error.line, error.column) == _line_of(text, "id: 5") and "id must be text" in error.reason


def test_duplicate_ids_and_filter_references_point_at_their_document(tmp_path: Path) -> None:
    first = rule_yaml("s:\n  User: a\ncondition: s", rule_id=GOOD_ID)
    second = rule_yaml("s:\n  User: b\ncondition: s", rule_id=GOOD_ID)
    (tmp_path / "a.yml").write_text(first)
    (tmp_path / "b.yml").write_text("# a comment first\n" + second)
    report = load_rules([tmp_path])
    [error] = report.errors
    assert (error.kind, error.path, error.line, error.column) == (ErrorKind.DUPLICATE, tmp_path / "b.yml", 2, 1)
    text = first + "---\n" + """title: Filter
id: 9f9f9f9f-1111-4222-8333-444455556666
logsource:
    product: windows
filter:
    rules:
        - 7e7e7e7e-1111-4222-8333-444455556666
    selection:
        User: admin
    condition: not selection
"""
    error = _only_error(text)
    assert error.rule_id == "9f9f9f9f-1111-4222-8333-444455556666"
    assert (error.line, error.column) == _line_of(text, "title: Filter")


def test_a_bug_in_lowering_is_raised_not_reported_as_the_rules_error(monkeypatch: pytest.MonkeyPatch) -> None:
    text = rule_yaml("s:\n  Image: a\ncondition: s")
    for bug in (TypeError("a bug"), KeyError("a bug"), ValueError("a bug"), AttributeError("a bug")):
        def broken(*args: object, bug: Exception = bug) -> object:
            raise bug
        monkeypatch.setattr(loading_module, "lower_condition", broken)
        with pytest.raises(type(bug), match="a bug"):
            load_rules_text(text)


def test_importing_and_using_the_engine_leaves_pysigmas_modifier_table_alone() -> None:
    # A fresh interpreter: pySigma's table before Vigil is imported, after, and after a rule with `utf16le`
    # (the specification's alias of `wide`) has loaded and matched.
    rule = rule_yaml("s:\n  CommandLine|utf16le|base64offset|contains: 'ping'\ncondition: s")
    script = f"""
import sigma.modifiers as m
before = dict(m.modifier_mapping)
import vigil.detect, vigil.detect.loading
from vigil.detect import load_rules_text
assert dict(m.modifier_mapping) == before
report = load_rules_text({rule!r})
assert not report.errors, [str(e) for e in report.errors]
import base64
encoded = base64.b64encode("ping".encode("utf-16le")).decode()
event = {{"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1, "CommandLine": "x " + encoded}}
assert report.ruleset.match_windows(event)
assert dict(m.modifier_mapping) == before and "utf16le" not in m.modifier_mapping
print("unchanged")
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "unchanged", proc.stderr


def test_rules_check_prints_file_line_and_column(tmp_path: Path) -> None:
    text = rule_yaml("selection:\n  CommandLine|bogus: x\ncondition: selection")
    (tmp_path / "broken.yml").write_text(text)
    line, column = _line_of(text, "CommandLine|bogus")
    result = CliRunner().invoke(app, ["rules", "check", "--no-cache", str(tmp_path)])
    assert result.exit_code == 1
    assert f"{tmp_path / 'broken.yml'}:{line}:{column} " in result.stdout, result.stdout


def test_the_compiled_rule_cache_keeps_the_locations(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "broken.yml").write_text(rule_yaml("selection:\n  CommandLine|bogus: x\ncondition: selection"))
    cold = load_rules([rules], cache_dir=tmp_path / "cache")
    warm = load_rules([rules], cache_dir=tmp_path / "cache")
    assert (cold.cache, warm.cache) == ("stored", "hit")
    assert warm.errors == cold.errors and warm.errors[0].line is not None
