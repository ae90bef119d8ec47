"""Sigma filters: each excludes exactly what its condition says, for exactly the rules it names (by id or name)
or, with `rules: any`, for the rules its log source covers; a broken filter is reported and the rest load."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.unit.detect.support import SYSMON, rule_yaml
from vigil.detect import ErrorKind, LoadReport, load_rules, load_rules_text

RAR = "6f3e2987-db24-4c78-a860-b4f4095a7095"
RAR_TOO = "7a4f3098-ec35-4d89-b971-c5f5106b8106"  # the same detection, never named by a filter
JUMP = "df0841c0-9846-4e9f-ad8a-7df91571771b"
SHELL = "0b1c2d3e-4f50-4617-8899-aabbccddeeff"  # network_connection
FILTER = "e1d2c3b4-a596-4788-99aa-bbccddeeff00"


def _rules(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rar = "selection:\n  Image|endswith: '\\rar.exe'\ncondition: selection"
    (folder / "rar.yml").write_text(rule_yaml(rar, rule_id=RAR, title="Rar"))
    (folder / "rar_too.yml").write_text(rule_yaml(rar, rule_id=RAR_TOO, title="Rar too"))
    (folder / "jump.yml").write_text(
        rule_yaml("selection:\n  CommandLine|contains: 'jump'\ncondition: selection", rule_id=JUMP, title="Jump")
        + "name: jump_host_login\n")
    (folder / "shell.yml").write_text(rule_yaml(
        "selection:\n  DestinationPort: 4444\ncondition: selection", rule_id=SHELL, title="Shell",
        logsource="product: windows\ncategory: network_connection"))
    return folder


def _filter(rules: str, *, logsource: str = "product: windows\ncategory: process_creation",
            condition: str = "not selection", selection: str = "User|startswith: 'adm_'",
            filter_id: str = FILTER) -> str:
    return (f"title: Admin accounts\nid: {filter_id}\nlogsource:\n{textwrap.indent(logsource, '    ')}\n"
            f"filter:\n    rules:{rules}\n    selection:\n        {selection}\n    condition: {condition}\n")


def _process(**fields: str) -> dict[str, object]:
    return {"Channel": SYSMON, "EventID": 1, **fields}


def _hit_ids(report: LoadReport, event: dict[str, object]) -> set[str]:
    return {h.rule_id for h in report.ruleset.match_windows(event)}


def test_filter_in_another_file_excludes_only_for_the_rules_it_names(tmp_path: Path) -> None:
    rules = _rules(tmp_path / "rules")
    filters = tmp_path / "filters"
    filters.mkdir()
    # By id (written in capitals: ids compare as UUIDs) and by the rule's `name`.
    (filters / "mf_admin.yml").write_text(_filter(f"\n        - {RAR.upper()}\n        - jump_host_login"))
    report = load_rules([rules, filters])
    assert not report.errors, [str(e) for e in report.errors]
    assert len(report.ruleset) == 4  # a filter is no rule of its own
    rar = {"Image": "C:\\Program Files\\WinRAR\\rar.exe"}
    assert _hit_ids(report, _process(**rar, User="adm_bob")) == {RAR_TOO}
    assert _hit_ids(report, _process(**rar, User="bob")) == {RAR, RAR_TOO}
    assert _hit_ids(report, _process(**rar)) == {RAR, RAR_TOO}  # no User: the exclusion does not hold
    assert _hit_ids(report, _process(CommandLine="ssh jump01", User="ADM_alice")) == set()
    assert _hit_ids(report, _process(CommandLine="ssh jump01", User="alice")) == {JUMP}


def test_filter_condition_is_and_ed_as_written(tmp_path: Path) -> None:
    # pySigma's semantics: the filter's condition joins the rule's with `and`; without `not` it keeps only
    # the events it selects.
    rules = _rules(tmp_path / "rules")
    (rules / "mf_only_admins.yml").write_text(_filter(f" {RAR}", condition="selection"))
    report = load_rules([rules])
    assert not report.errors, [str(e) for e in report.errors]
    assert _hit_ids(report, _process(Image="C:\\rar.exe", User="adm_x")) == {RAR, RAR_TOO}
    assert _hit_ids(report, _process(Image="C:\\rar.exe", User="x")) == {RAR_TOO}


def test_rules_any_follows_the_filters_own_log_source(tmp_path: Path) -> None:
    rules = _rules(tmp_path / "rules")
    (rules / "mf_lab.yml").write_text(_filter(
        " any", logsource="product: windows\ncategory: network_connection",
        selection="DestinationIp|cidr: '10.66.0.0/16'"))
    report = load_rules([rules])
    assert not report.errors, [str(e) for e in report.errors]
    shell = {"Channel": SYSMON, "EventID": 3, "DestinationPort": "4444"}
    assert _hit_ids(report, {**shell, "DestinationIp": "10.66.1.2"}) == set()
    assert _hit_ids(report, {**shell, "DestinationIp": "10.67.1.2"}) == {SHELL}
    # The process_creation rules are outside its log source: untouched even with a matching field.
    assert _hit_ids(report, _process(Image="C:\\rar.exe", DestinationIp="10.66.1.2")) == {RAR, RAR_TOO}


def test_a_filter_log_source_without_category_covers_every_category_of_the_product(tmp_path: Path) -> None:
    rules = _rules(tmp_path / "rules")
    (rules / "mf_host.yml").write_text(_filter(
        " []", logsource="product: windows", selection="Computer: 'build-01'"))  # an empty list is "any"
    report = load_rules([rules])
    assert not report.errors, [str(e) for e in report.errors]
    assert _hit_ids(report, _process(Image="C:\\rar.exe", Computer="BUILD-01")) == set()
    assert _hit_ids(report, {"Channel": SYSMON, "EventID": 3, "DestinationPort": "4444", "Computer": "build-01"}) \
        == set()
    assert _hit_ids(report, _process(Image="C:\\rar.exe", Computer="ws-02")) == {RAR, RAR_TOO}


def test_filter_in_the_same_text_applies_once(tmp_path: Path) -> None:
    text = rule_yaml("selection:\n  Image|endswith: '\\rar.exe'\ncondition: selection", rule_id=RAR) + "---\n" \
        + _filter(f" {RAR}")
    report = load_rules_text(text)
    assert not report.errors, [str(e) for e in report.errors]
    assert _hit_ids(report, _process(Image="C:\\rar.exe", User="adm_x")) == set()
    assert _hit_ids(report, _process(Image="C:\\rar.exe", User="x")) == {RAR}


def test_filters_apply_to_rules_kept_by_a_rule_filter_and_name_rules_it_drops(tmp_path: Path) -> None:
    from vigil.core.severity import RuleLevel
    from vigil.detect import RuleFilter

    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "low.yml").write_text(rule_yaml("selection:\n  Image|endswith: '\\rar.exe'\ncondition: selection",
                                             rule_id=RAR_TOO, level="low"))
    (rules / "high.yml").write_text(rule_yaml("selection:\n  Image|endswith: '\\rar.exe'\ncondition: selection",
                                              rule_id=RAR, level="high"))
    (rules / "mf.yml").write_text(_filter(f"\n        - {RAR}\n        - {RAR_TOO}"))
    report = load_rules([rules], rule_filter=RuleFilter(min_level=RuleLevel.HIGH))
    assert not report.errors, [str(e) for e in report.errors]  # the low rule is left out, not unknown
    assert _hit_ids(report, _process(Image="C:\\rar.exe", User="adm_x")) == set()
    assert _hit_ids(report, _process(Image="C:\\rar.exe", User="x")) == {RAR}


def test_broken_filters_are_reported_with_file_and_reason_and_the_rest_load(tmp_path: Path) -> None:
    rules = _rules(tmp_path / "rules")
    filters = tmp_path / "filters"
    filters.mkdir()
    no_rules = filters / "no_rules.yml"
    no_rules.write_text(f"title: No rules\nid: {FILTER}\nlogsource:\n    product: windows\n"
                        "filter:\n    selection:\n        User: x\n    condition: not selection\n")
    bad_condition = filters / "bad_condition.yml"
    bad_condition.write_text(_filter(f" {RAR}", condition="not selection and missing",
                                     filter_id="a0000000-0000-4000-8000-000000000001"))
    bad_modifier = filters / "bad_modifier.yml"
    bad_modifier.write_text(_filter(f" {RAR}", selection="User|nosuch: x",
                                    filter_id="a0000000-0000-4000-8000-000000000002"))
    unknown = filters / "unknown.yml"
    unknown.write_text(_filter(f"\n        - 99999999-0000-4000-8000-000000000000\n        - {JUMP}",
                               filter_id="a0000000-0000-4000-8000-000000000003"))
    outside = filters / "outside.yml"
    outside.write_text(_filter(f" {SHELL}", selection="Image|endswith: '\\ncat.exe'",
                               filter_id="a0000000-0000-4000-8000-000000000004"))
    report = load_rules([rules, filters])
    by_path = {e.path: e for e in report.errors}
    assert set(by_path) == {no_rules, bad_condition, bad_modifier, unknown, outside}, [str(e) for e in report.errors]
    assert len(report.errors) == 5  # one each: pySigma's own error is not reported a second time for the file
    assert by_path[no_rules].kind is ErrorKind.PARSE and "'rules'" in by_path[no_rules].reason
    assert by_path[no_rules].rule_id == FILTER and by_path[no_rules].title == "No rules"
    assert "missing" in by_path[bad_condition].reason
    assert "nosuch" in by_path[bad_modifier].reason
    assert "99999999-0000-4000-8000-000000000000" in by_path[unknown].reason and "not loaded" in by_path[unknown].reason
    assert "network_connection" in by_path[outside].reason and "not applied" in by_path[outside].reason
    assert str(unknown) in str(by_path[unknown])
    assert len(report.ruleset) == 4
    # The broken filters change nothing; the one with an unknown reference still filters the rule it found.
    assert _hit_ids(report, _process(Image="C:\\rar.exe", User="adm_x")) == {RAR, RAR_TOO}
    assert _hit_ids(report, _process(CommandLine="jump", User="adm_x")) == set()
    assert _hit_ids(report, {"Channel": SYSMON, "EventID": 3, "DestinationPort": "4444",
                             "Image": "C:\\ncat.exe"}) == {SHELL}
