"""Timestamp-part modifiers: a part of the field's instant, in UTC, equals the rule's number; values that are
not timestamps never match and never raise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from tests.unit.detect.support import SYSMON, matches, rule_yaml, ruleset_for
from vigil.detect import ErrorKind, load_rules_text
from vigil.detect.ir import Atom, Op
from vigil.detect.prefilter import Need, NeedKind, requirement
from vigil.detect.timeparts import instant, timestamp_part

# (modifier, rule value, a value that has it, a value that does not)
PARTS = [
    ("minute", 59, "2024-05-06T07:59:59Z", "2024-05-06T07:58:59Z"),
    ("minute", 0, "2024-05-06T08:00:00.9999999Z", "2024-05-06T07:59:59.9999999Z"),
    ("hour", 0, "2024-05-06T00:30:00Z", "2024-05-06T12:30:00Z"),
    ("hour", 23, "2024-05-06 23:00:00.123", "2024-05-06 22:59:59.999"),  # Sysmon's UtcTime: no zone is UTC
    ("day", 29, "2024-02-29T10:00:00Z", "2024-02-28T10:00:00Z"),
    ("day", 1, "2024-03-01", "2024-03-02"),
    ("week", 53, "2021-01-03T12:00:00Z", "2021-01-04T12:00:00Z"),  # ISO weeks: Jan 3, 2021 is in 2020's week 53
    ("week", 1, "2024-12-30T12:00:00Z", "2024-12-29T12:00:00Z"),  # ...and Dec 30, 2024 in 2025's week 1
    ("month", 12, "2023-12-31T23:59:59Z", "2024-01-01T00:00:00Z"),
    ("year", 2021, "2021-01-03T12:00:00Z", "2020-12-31T12:00:00Z"),  # the calendar year, not the ISO week's
]


@pytest.mark.parametrize(("part", "number", "hit", "miss"), PARTS, ids=[f"{p[0]}-{p[1]}" for p in PARTS])
def test_each_part(part: str, number: int, hit: str, miss: str) -> None:
    ruleset = ruleset_for(f"selection:\n  UtcTime|{part}: {number}\ncondition: selection")
    assert matches(ruleset, UtcTime=hit)
    assert not matches(ruleset, UtcTime=miss)


@pytest.mark.parametrize(("value", "hour", "day"), [
    ("2024-03-10T01:30:00+02:00", 23, 9),  # an offset moves the instant to the previous UTC day
    ("2024-03-09T23:30:00-00:30", 0, 10),
    ("2024-03-10T01:30:00.1234567+02:00", 23, 9),  # Windows' seven fraction digits
    ("1710034200", 1, 10),  # epoch seconds (2024-03-10T01:30:00Z)
    ("1710034200.75", 1, 10),
    ("1710034200000", 1, 10),  # epoch milliseconds
    ("  2024-03-10T01:30:00Z ", 1, 10),
])
def test_offsets_and_epochs_are_read_in_utc(value: str, hour: int, day: int) -> None:
    assert timestamp_part(value, "hour") == hour
    assert timestamp_part(value, "day") == day
    ruleset = ruleset_for(f"selection:\n  UtcTime|hour: {hour}\n  UtcTime|day: {day}\ncondition: selection")
    assert matches(ruleset, UtcTime=value)


def test_epoch_numbers_in_json_events_match() -> None:
    ruleset = ruleset_for("selection:\n  EventTime|year: 2024\ncondition: selection")
    assert matches(ruleset, EventTime=1710034200)  # an int in the event: rules see its text
    assert not matches(ruleset, EventTime=1010034200)


@pytest.mark.parametrize("value", [
    "", "yesterday", "2024-13-01T00:00:00Z", "2024-02-30", "24:00", "0x1234", "1e9", "99999999999999999999999",
    "-99999999999999999999", "9999-12-31T23:59:59-14:00", "NaN", "2024-03-10T01:30:00+25:00",
])
def test_values_that_are_not_timestamps_never_match(value: str) -> None:
    assert timestamp_part(value, "year") is None
    ruleset = ruleset_for("selection:\n  UtcTime|minute: 0\nfilter:\n  UtcTime|hour: 0\n"
                          "condition: selection or not filter")
    # `selection` cannot hold, so only the negation of a part that did not match makes the rule fire.
    assert matches(ruleset, UtcTime=value)
    assert not ruleset_for("selection:\n  UtcTime|minute: 0\ncondition: selection").match_windows(
        {"Channel": SYSMON, "EventID": 1, "UtcTime": value})


def test_non_text_values_give_no_part() -> None:
    assert timestamp_part(None, "hour") is None
    assert timestamp_part(("2024-01-01",), "hour") is None
    assert instant("2024-01-01T00:00:00Z") == datetime(2024, 1, 1, tzinfo=UTC)


def test_a_list_of_numbers_is_any_of() -> None:
    ruleset = ruleset_for("selection:\n  UtcTime|hour:\n    - 22\n    - 23\n    - 0\ncondition: selection")
    for hour in (22, 23, 0):
        assert matches(ruleset, UtcTime=f"2024-01-01T{hour:02d}:10:00Z")
    assert not matches(ruleset, UtcTime="2024-01-01T21:10:00Z")


def test_several_parts_combine() -> None:
    ruleset = ruleset_for("selection:\n  UtcTime|hour: 3\n  UtcTime|month: 12\n  Image|endswith: '\\x.exe'\n"
                          "condition: selection")
    assert matches(ruleset, UtcTime="2024-12-01T03:00:00Z", Image="C:\\x.exe")
    assert not matches(ruleset, UtcTime="2024-11-01T03:00:00Z", Image="C:\\x.exe")
    assert not matches(ruleset, UtcTime="2024-12-01T04:00:00Z", Image="C:\\x.exe")


def test_list_valued_fields_match_when_an_element_does() -> None:
    # Unnamed EVTX `Data` arrays go through the tree walker instead of the generated function.
    ruleset = ruleset_for("selection:\n  Data|hour: 3\ncondition: selection")
    assert matches(ruleset, Data=["not a time", "2024-01-01T03:15:00Z"])
    assert not matches(ruleset, Data=["not a time", "2024-01-01T04:15:00Z"])


def test_telemetry_rows_with_datetime_values() -> None:
    # Live detection matches stored rows, whose Timestamp is a datetime (naive ones are UTC).
    ruleset = ruleset_for("selection:\n  Timestamp|hour: 3\n  Image|endswith: '/curl'\ncondition: selection",
                          logsource="product: linux\ncategory: process_creation")
    row = {"ActionType": "ProcessCreated", "FolderPath": "/usr/bin/curl"}
    assert ruleset.match_telemetry("DeviceProcessEvents", {**row, "Timestamp": datetime(2024, 1, 1, 3, 5, tzinfo=UTC)})
    assert ruleset.match_telemetry("DeviceProcessEvents", {**row, "Timestamp": datetime(2024, 1, 1, 3, 5)})
    cet = timezone(timedelta(hours=1))
    assert not ruleset.match_telemetry("DeviceProcessEvents", {**row, "Timestamp": datetime(2024, 1, 1, 3, 5,
                                                                                            tzinfo=cet)})
    assert ruleset.match_telemetry("DeviceProcessEvents", {**row, "Timestamp": datetime(2024, 1, 1, 4, 5,
                                                                                        tzinfo=cet)})


@pytest.mark.parametrize(("part", "number"), [("minute", 60), ("hour", 24), ("hour", -1), ("day", 0), ("day", 32),
                                              ("week", 54), ("week", 0), ("month", 13), ("month", 0)])
def test_out_of_range_rule_values_are_load_errors(part: str, number: int) -> None:
    report = load_rules_text(rule_yaml(f"selection:\n  UtcTime|{part}: {number}\ncondition: selection"))
    [error] = report.errors
    assert error.kind is ErrorKind.PARSE and f"|{part} value {number} is outside" in error.reason
    assert len(report.ruleset) == 0


def test_a_timestamp_part_on_a_text_value_is_a_load_error() -> None:
    report = load_rules_text(rule_yaml("selection:\n  UtcTime|hour: 'three'\ncondition: selection"))
    assert len(report.errors) == 1 and report.errors[0].kind is ErrorKind.PARSE


def test_rules_without_timestamp_parts_carry_no_helper() -> None:
    plain = ruleset_for("selection:\n  Image|endswith: '\\x.exe'\ncondition: selection")
    timed = ruleset_for("selection:\n  UtcTime|hour: 3\ncondition: selection")

    def names(code: object) -> set[str]:
        out = set(code.co_names)  # type: ignore[attr-defined]
        for c in code.co_consts:  # type: ignore[attr-defined]
            if hasattr(c, "co_names"):
                out |= names(c)
        return out

    assert not any("_tpart" in names(c) for c in plain.code)
    assert any("_tpart" in names(c) for c in timed.code)


def test_a_timestamp_part_needs_its_field_in_the_prefilter() -> None:
    atom = Atom("UtcTime", Op.TIMEPART, ("3",), cased=True, arg="hour")
    assert requirement(atom) == frozenset({Need(NeedKind.HAS, "UtcTime")})
