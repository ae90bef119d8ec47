"""Field absence: a field the event source does not carry is absent for every rule, its branches pruned."""

from __future__ import annotations

from typing import Any

from tests.unit.detect.support import SYSMON, report_for
from vigil.detect import LoadReport


# Security 4688 carries Image (NewProcessName), ParentImage, CommandLine... but no OriginalFileName or User.
def _4688(**fields: Any) -> dict[str, Any]:
    return {"Channel": "Security", "EventID": 4688, **fields}


def _bound_on_4688(report: LoadReport) -> bool:
    return not report.notes


def _absent(report: LoadReport) -> list[tuple[str, tuple[str, ...], bool]]:
    return [(a.source, a.fields, a.bound) for a in report.absent]


def test_a_missing_field_in_an_or_branch_leaves_the_other_branch_live() -> None:
    report = report_for("""
        sel_img:
          - Image|endswith: '\\x.exe'
          - OriginalFileName: 'x.exe'
        condition: sel_img
    """)
    assert _bound_on_4688(report)
    assert _absent(report) == [("Security 4688", ("OriginalFileName",), True)]
    rules = report.ruleset
    assert rules.match_windows(_4688(NewProcessName="C:\\a\\X.exe"))
    assert not rules.match_windows(_4688(NewProcessName="C:\\a\\y.exe", OriginalFileName="x.exe"))
    # Sysmon carries it: both branches live there
    assert rules.match_windows({"Channel": SYSMON, "EventID": 1, "OriginalFileName": "x.exe"})


def test_a_filter_on_a_missing_field_does_not_exclude() -> None:
    report = report_for("""
        selection:
          Image|endswith: '\\x.exe'
        filter:
          OriginalFileName: 'x.exe'
        condition: selection and not filter
    """)
    assert _bound_on_4688(report)
    assert report.ruleset.match_windows(_4688(NewProcessName="C:\\x.exe"))
    # even an event that (wrongly) carries the field: the source's declaration decides, not the record
    assert report.ruleset.match_windows(_4688(NewProcessName="C:\\x.exe", OriginalFileName="x.exe"))


def test_a_null_filter_on_a_missing_field_excludes_everything_as_on_any_event_without_it() -> None:
    report = report_for("""
        selection:
          Image|endswith: '\\x.exe'
        filter:
          OriginalFileName: null
        condition: selection and not filter
    """)
    assert not report.notes  # Sysmon 1 carries the field
    assert _absent(report) == [("Security 4688", ("OriginalFileName",), False)]
    assert not report.ruleset.match_windows(_4688(NewProcessName="C:\\x.exe"))
    assert not report.ruleset.match_windows({"Channel": SYSMON, "EventID": 1, "Image": "C:\\x.exe"})
    assert report.ruleset.match_windows({"Channel": SYSMON, "EventID": 1, "Image": "C:\\x.exe",
                                         "OriginalFileName": "y.exe"})


def test_exists_on_a_missing_field_is_false_and_exists_false_is_true() -> None:
    present = report_for("""
        selection:
          Image|endswith: '\\x.exe'
          OriginalFileName|exists: true
        condition: selection
    """)
    assert not present.ruleset.match_windows(_4688(NewProcessName="C:\\x.exe", OriginalFileName="x.exe"))
    assert present.ruleset.match_windows({"Channel": SYSMON, "EventID": 1, "Image": "C:\\x.exe",
                                          "OriginalFileName": "x.exe"})
    absent = report_for("""
        selection:
          Image|endswith: '\\x.exe'
          OriginalFileName|exists: false
        condition: selection
    """)
    assert absent.ruleset.match_windows(_4688(NewProcessName="C:\\x.exe"))
    assert _absent(absent) == [("Security 4688", ("OriginalFileName",), True)]


def test_a_keyword_only_rule_is_bound_everywhere_and_searches_what_the_source_has() -> None:
    report = report_for("keywords:\n  - 'mimikatz'\ncondition: keywords")
    assert _bound_on_4688(report) and not report.absent
    assert report.ruleset.match_windows(_4688(CommandLine="run mimikatz now"))
    assert not report.ruleset.match_windows(_4688(CommandLine="dir"))


def test_and_with_a_missing_field_unbinds_the_rule_from_that_source_only() -> None:
    report = report_for("""
        selection:
          Image|endswith: '\\x.exe'
          OriginalFileName: 'x.exe'
        condition: selection
    """)
    assert not report.notes  # Sysmon 1 still carries both
    assert _absent(report) == [("Security 4688", ("OriginalFileName",), False)]
    assert not report.ruleset.match_windows(_4688(NewProcessName="C:\\x.exe", OriginalFileName="x.exe"))
    assert report.ruleset.match_windows({"Channel": SYSMON, "EventID": 1, "Image": "C:\\x.exe",
                                         "OriginalFileName": "X.EXE"})


def test_a_rule_with_no_live_branch_on_any_source_says_which_fields_are_absent_where() -> None:
    report = report_for("""
        selection:
          CommandLine|contains: 'x'
          NoSuchColumn: 'y'
        condition: selection
    """, logsource="product: linux\ncategory: process_creation")
    assert len(report.ruleset) == 1 and len(report.notes) == 1
    reason = report.notes[0].reason
    assert "DeviceProcessEvents ProcessCreated" in reason and "absent there: NoSuchColumn" in reason


def test_a_telemetry_source_treats_a_field_without_a_column_as_absent() -> None:
    report = report_for("""
        selection:
          Image|endswith: '/curl'
        filter:
          OriginalFileName: 'curl'
        condition: selection and not filter
    """, logsource="product: linux\ncategory: process_creation")
    assert not report.notes
    rules = report.ruleset
    assert rules.match_telemetry("DeviceProcessEvents", {"ActionType": "ProcessCreated", "FolderPath": "/usr/bin/curl"})


def test_a_condition_that_folds_to_true_matches_every_event_of_the_source() -> None:
    report = report_for("""
        filter:
          OriginalFileName: 'x.exe'
        condition: not filter
    """)
    assert report.ruleset.match_windows(_4688(NewProcessName="C:\\anything.exe"))
    assert not report.ruleset.match_windows({"Channel": SYSMON, "EventID": 1, "OriginalFileName": "x.exe"})
