"""`|expand` placeholders: values given as data match any-of; a missing one is the rule's clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.detect.support import matches, rule_yaml
from vigil.detect import ErrorKind, RuleSet, load_rules, load_rules_text
from vigil.detect.placeholders import PlaceholderFileError, load_placeholders

VALUES = {"admins": ("alice", "Bob"), "verb": ("user", "group"), "tools": ("C:\\Tools\\\\*",), "year": ("2024",)}


def _ruleset(detection: str, placeholders: dict[str, tuple[str, ...]] = VALUES) -> RuleSet:
    report = load_rules_text(rule_yaml(detection), placeholders=placeholders)
    assert not report.errors, [str(e) for e in report.errors]
    return report.ruleset


@pytest.mark.parametrize(("detection", "hits", "misses"), [
    ("User|expand: '%admins%'", [{"User": "alice"}, {"User": "BOB"}], [{"User": "carol"}, {"User": "alice2"}]),
    ("CommandLine|expand|contains: 'net %verb% /domain'",
     [{"CommandLine": "x net user /domain"}, {"CommandLine": "NET GROUP /domain y"}],
     [{"CommandLine": "net localgroup /domain"}]),
    # Two placeholders: every combination.
    ("CommandLine|expand: '%verb%-%admins%'", [{"CommandLine": "group-bob"}, {"CommandLine": "user-alice"}],
     [{"CommandLine": "user-carol"}]),
    # A value is a Sigma string: `*` is a wildcard (`\\*` a backslash then any text).
    ("Image|expand: '%tools%\\x.exe'", [{"Image": "c:\\tools\\sub\\x.exe"}], [{"Image": "c:\\other\\x.exe"}]),
    ("User|cased|expand: '%admins%'", [{"User": "Bob"}], [{"User": "bob"}]),
    ("CommandLine|re|expand: '^net %verb%\\b'", [{"CommandLine": "net user x"}], [{"CommandLine": "net users"}]),
    ("CommandLine|windash|expand|contains: '-u %admins%'", [{"CommandLine": "tool /u alice"}],
     [{"CommandLine": "tool +u alice"}]),
    # Without |expand, %...% is plain text.
    ("User: '%admins%'", [{"User": "%ADMINS%"}], [{"User": "alice"}]),
])
def test_expand_matches_any_value(detection: str, hits: list[dict[str, str]], misses: list[dict[str, str]]) -> None:
    ruleset = _ruleset(f"selection:\n  {detection}\ncondition: selection")
    for event in hits:
        assert matches(ruleset, **event), event
    for event in misses:
        assert not matches(ruleset, **event), event


def test_expand_under_not_excludes_every_value() -> None:
    ruleset = _ruleset("selection:\n  Image|endswith: '\\net.exe'\nfilter:\n  User|expand: '%admins%'\n"
                       "condition: selection and not filter")
    assert matches(ruleset, Image="C:\\net.exe", User="carol")
    assert not matches(ruleset, Image="C:\\net.exe", User="bob")
    assert not matches(ruleset, Image="C:\\net.exe", User="alice")


def test_missing_placeholder_is_the_rules_error_and_the_rest_load(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    needs = rules / "needs.yml"
    needs.write_text(rule_yaml("selection:\n  User|expand: '%admins%'\n  Computer|expand: '%dcs%'\n"
                               "condition: selection", rule_id="11111111-2222-4333-8444-555555555555"))
    (rules / "fine.yml").write_text(rule_yaml("selection:\n  User|expand: '%admins%'\ncondition: selection",
                                              title="Fine"))
    report = load_rules([rules], placeholders={"admins": ("alice",)})
    assert [r.title for r in report.ruleset.rules] == ["Fine"]
    [error] = report.errors
    assert error.kind is ErrorKind.PLACEHOLDER and error.path == needs
    assert error.rule_id == "11111111-2222-4333-8444-555555555555"
    assert "%dcs%" in error.reason and "--placeholders" in error.reason
    assert "placeholder" in str(error) and str(needs) in str(error)


def test_missing_placeholder_in_a_filter_is_the_filters_error(tmp_path: Path) -> None:
    rule = rule_yaml("selection:\n  Image|endswith: '\\net.exe'\ncondition: selection",
                     rule_id="11111111-2222-4333-8444-555555555555")
    flt = ("title: Known admins\nid: 21111111-2222-4333-8444-555555555555\n"
           "logsource:\n    product: windows\nfilter:\n    rules: any\n"
           "    selection:\n        User|expand: '%admins%'\n    condition: not selection\n")
    report = load_rules_text(rule + "---\n" + flt)
    [error] = report.errors
    assert error.kind is ErrorKind.PLACEHOLDER and error.rule_id == "21111111-2222-4333-8444-555555555555"
    filtered = load_rules_text(rule + "---\n" + flt, placeholders={"admins": ("alice",)})
    assert not filtered.errors
    assert not matches(filtered.ruleset, Image="C:\\net.exe", User="alice")
    assert matches(filtered.ruleset, Image="C:\\net.exe", User="bob")


def test_placeholder_files_yaml_and_toml(tmp_path: Path) -> None:
    yml = tmp_path / "values.yml"
    yml.write_text("admins:\n  - alice\n  - bob\nport: 4444\nratio: 1.5\n")
    assert load_placeholders(yml) == {"admins": ("alice", "bob"), "port": ("4444",), "ratio": ("1.5",)}
    toml = tmp_path / "values.toml"
    toml.write_text('admins = ["alice", "bob"]\ndomain = "corp.example"\n')
    assert load_placeholders(toml) == {"admins": ("alice", "bob"), "domain": ("corp.example",)}
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    assert load_placeholders(empty) == {}


@pytest.mark.parametrize(("name", "text", "reason"), [
    ("list.yml", "- alice\n", "expected a mapping"),
    ("empty_list.yml", "admins: []\n", "empty list"),
    ("nested.yml", "admins:\n  - {name: alice}\n", "not text or a number"),
    ("bool.yml", "enabled: true\n", "not text or a number"),
    ("bad_name.yml", "'%admins%': x\n", "not a placeholder name"),
    ("broken.yml", "admins: [alice\n", "invalid YAML"),
    ("broken.toml", "admins = [\n", "invalid TOML"),
    ("date.toml", "when = 2024-01-01\n", "not text or a number"),
    ("values.json", "{}", "unknown placeholder file type"),
])
def test_bad_placeholder_files_name_the_file_and_the_problem(tmp_path: Path, name: str, text: str,
                                                             reason: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(PlaceholderFileError) as info:
        load_placeholders(path)
    assert str(path) in str(info.value) and reason in str(info.value)


def test_a_missing_placeholder_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PlaceholderFileError, match=r"nope\.yml"):
        load_placeholders(tmp_path / "nope.yml")
