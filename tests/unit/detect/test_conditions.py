"""Conditions, keywords, value types and the semantic traps other engines fall into."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.detect.support import SYSMON, matches, rule_yaml, ruleset_for
from vigil.core.attack import AttackTactic
from vigil.core.severity import RuleLevel, Severity
from vigil.detect import flatten_evtx, load_rules_text

TWO_SELECTIONS = """
selection_img:
  Image|endswith: '\\cmd.exe'
selection_cli:
  CommandLine|contains: 'whoami'
filter_admin:
  User: 'admin'
"""


@pytest.mark.parametrize(("condition", "hit", "miss"), [
    ("selection_img and selection_cli", {"Image": "C:\\cmd.exe", "CommandLine": "whoami"},
     {"Image": "C:\\cmd.exe", "CommandLine": "dir"}),
    ("selection_img or selection_cli", {"Image": "C:\\x.exe", "CommandLine": "whoami"},
     {"Image": "C:\\x.exe", "CommandLine": "dir"}),
    ("selection_img and not filter_admin", {"Image": "C:\\cmd.exe", "User": "bob"},
     {"Image": "C:\\cmd.exe", "User": "ADMIN"}),
    ("not filter_admin", {"Image": "C:\\cmd.exe"}, {"User": "admin"}),
    ("(selection_img or selection_cli) and not filter_admin", {"CommandLine": "whoami", "User": "bob"},
     {"CommandLine": "whoami", "User": "admin"}),
    ("1 of selection_*", {"CommandLine": "whoami"}, {"CommandLine": "dir"}),
    ("any of selection_*", {"Image": "C:\\cmd.exe"}, {"Image": "C:\\x.exe"}),
    ("all of selection_*", {"Image": "C:\\cmd.exe", "CommandLine": "whoami"}, {"CommandLine": "whoami"}),
    ("1 of them", {"User": "admin"}, {"User": "bob"}),
    ("all of them", {"Image": "C:\\cmd.exe", "CommandLine": "whoami", "User": "admin"},
     {"Image": "C:\\cmd.exe", "CommandLine": "whoami", "User": "bob"}),
    ("all of selection_* and not 1 of filter_*", {"Image": "C:\\cmd.exe", "CommandLine": "whoami"},
     {"Image": "C:\\cmd.exe", "CommandLine": "whoami", "User": "admin"}),
])
def test_condition(condition: str, hit: dict[str, Any], miss: dict[str, Any]) -> None:
    ruleset = ruleset_for(TWO_SELECTIONS + f"condition: {condition}")
    assert matches(ruleset, **hit)
    assert not matches(ruleset, **miss)


def test_fields_of_one_map_are_and_linked_and_list_of_maps_or_linked() -> None:
    ruleset = ruleset_for("""
selection:
  - Image|endswith: '\\a.exe'
    CommandLine|contains: 'x'
  - Image|endswith: '\\b.exe'
condition: selection
""")
    assert matches(ruleset, Image="C:\\a.exe", CommandLine="x")
    assert matches(ruleset, Image="C:\\b.exe")
    assert not matches(ruleset, Image="C:\\a.exe", CommandLine="y")


def test_keywords_search_every_value() -> None:
    ruleset = ruleset_for("keywords:\n  - 'mimikatz'\n  - 'sekurlsa'\ncondition: keywords")
    assert matches(ruleset, ParentCommandLine="run MIMIKATZ.exe")
    assert matches(ruleset, Image="C:\\sekurlsa")
    assert not matches(ruleset, CommandLine="notepad")


def test_keywords_with_all_need_every_word() -> None:
    ruleset = ruleset_for("keywords:\n  '|all':\n    - 'net'\n    - 'user'\ncondition: keywords")
    assert matches(ruleset, CommandLine="net", User="user1")
    assert not matches(ruleset, CommandLine="net group")


def test_event_id_matches_as_number_or_string() -> None:
    for value in ("4688", 4688):
        ruleset = ruleset_for(f"selection:\n  EventID: {value!r}\ncondition: selection" if isinstance(value, str)
                              else f"selection:\n  EventID: {value}\ncondition: selection",
                              logsource="product: windows\nservice: security")
        for event_id in (4688, "4688"):
            assert ruleset.match_windows({"Channel": "Security", "EventID": event_id})
        assert not ruleset.match_windows({"Channel": "Security", "EventID": 4689})


@pytest.mark.parametrize("rule_value", ["'true'", "true"])
def test_json_booleans_compare_as_true_false_strings(rule_value: str) -> None:
    ruleset = ruleset_for(f"selection:\n  Initiated: {rule_value}\ncondition: selection",
                          logsource="product: windows\ncategory: network_connection")
    base = {"Channel": SYSMON, "EventID": 3}
    assert ruleset.match_windows({**base, "Initiated": True})
    assert ruleset.match_windows({**base, "Initiated": "true"})
    assert not ruleset.match_windows({**base, "Initiated": False})


def test_logsource_picks_the_channel_and_event_id() -> None:
    ruleset = ruleset_for("selection:\n  Image|endswith: '\\cmd.exe'\ncondition: selection")
    assert ruleset.match_windows({"Channel": SYSMON, "EventID": 1, "Image": "C:\\cmd.exe"})
    assert not ruleset.match_windows({"Channel": SYSMON, "EventID": 11, "Image": "C:\\cmd.exe"})
    assert not ruleset.match_windows({"Channel": "Security", "EventID": 1, "Image": "C:\\cmd.exe"})


def test_security_4688_uses_renamed_fields() -> None:
    ruleset = ruleset_for("selection:\n  Image|endswith: '\\cmd.exe'\ncondition: selection")
    assert ruleset.match_windows({"Channel": "Security", "EventID": 4688, "NewProcessName": "C:\\cmd.exe"})
    assert not ruleset.match_windows({"Channel": "Security", "EventID": 4688, "NewProcessName": "C:\\x.exe"})


def test_unnamed_data_array_is_flattened_without_dropping_values() -> None:
    record = {"Event": {
        "System": {"Channel": "Windows PowerShell", "EventID": {"#attributes": {"Qualifiers": 0}, "#text": 400},
                   "Provider": {"#attributes": {"Name": "PowerShell"}}, "Computer": "ws1"},
        "EventData": {"Data": {"#text": ["Available", "None", "HostName=ConsoleHost\nHostApplication=pwsh -enc"]}},
    }}
    flat = flatten_evtx(record)
    assert flat["Data"] == ["Available", "None", "HostName=ConsoleHost\nHostApplication=pwsh -enc"]
    assert flat["EventID"] == 400 and flat["Provider_Name"] == "PowerShell" and flat["EventID_Qualifiers"] == 0
    ruleset = ruleset_for(
        "selection:\n  Data|contains: 'HostApplication=pwsh'\ncondition: selection",
        logsource="product: windows\ncategory: ps_classic_start")
    hits = ruleset.match_evtx_record(record)
    assert [h.matched_fields for h in hits] == [("Data",)]
    record["Event"]["EventData"]["Data"]["#text"][2] = "HostApplication=cmd"  # type: ignore[index]
    assert not ruleset.match_evtx_record(record)


def test_hit_carries_rule_metadata_and_attack_mapping() -> None:
    report = load_rules_text(rule_yaml("selection:\n  CommandLine|contains: 'x'\ncondition: selection",
                                       rule_id="9b2c4d1e-0000-4000-8000-000000000001", level="critical",
                                       tags=("attack.execution", "attack.t1059.004", "attack.defense-evasion",
                                             "attack.t1027", "cve.2021-1234")))
    hits = report.ruleset.match_windows({"Channel": SYSMON, "EventID": 1, "CommandLine": "x"})
    assert len(hits) == 1
    hit = hits[0]
    assert hit.rule_id == "9b2c4d1e-0000-4000-8000-000000000001"
    assert hit.level is RuleLevel.CRITICAL and hit.severity is Severity.HIGH
    assert hit.techniques == ("T1059.004", "T1027")
    assert hit.tactics == (AttackTactic.EXECUTION, AttackTactic.DEFENSE_EVASION)
    assert hit.matched_fields == ("CommandLine",)
    assert hit.status == "test" and hit.author == "Vigil tests"


def test_multiple_conditions_are_or_linked() -> None:
    ruleset = ruleset_for("a:\n  User: x\nb:\n  User: y\ncondition:\n  - a\n  - b")
    assert matches(ruleset, User="y")
    assert not matches(ruleset, User="z")


def test_a_channel_field_in_the_event_data_does_not_hide_the_events_source() -> None:
    # Event 104 (log cleared) names the cleared log in UserData as "Channel": the flat event then holds two
    # Channel values, and the first, System's, still decides which rules see the event.
    record = {"Event": {
        "System": {"Channel": "System", "EventID": 104, "Provider": {"#attributes": {"Name": "Eventlog"}}},
        "UserData": {"LogFileCleared": {"Channel": "Security", "BackupPath": ""}},
    }}
    assert flatten_evtx(record)["Channel"] == ["System", "Security"]
    ruleset = ruleset_for("selection:\n  EventID: 104\n  Channel: 'Security'\ncondition: selection",
                          logsource="product: windows\nservice: system")
    assert [h.matched_fields for h in ruleset.match_evtx_record(record)] == [("Channel", "EventID")]
    record["Event"]["System"]["Channel"] = "Application"  # type: ignore[index]
    assert not ruleset.match_evtx_record(record)  # an Application event: the System-log rule never runs
