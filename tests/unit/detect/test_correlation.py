"""Sigma correlation rules: each type fires on a self-made event stream and stays quiet on a near miss."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.unit.detect.support import SYSMON, rule_yaml
from vigil.detect import ErrorKind, load_rules_text
from vigil.detect.correlation import CorrelationEngine, CorrelationHit, parse_time
from vigil.detect.triage import Detection, with_correlations

BASE_A = "11111111-aaaa-4aaa-8aaa-111111111111"
BASE_B = "22222222-bbbb-4bbb-8bbb-222222222222"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _rules(correlation: str) -> str:
    a = rule_yaml("selection:\n  CommandLine|contains: 'net user'\ncondition: selection", rule_id=BASE_A,
                  title="Net user")
    b = rule_yaml("selection:\n  CommandLine|contains: 'whoami'\ncondition: selection", rule_id=BASE_B,
                  title="Whoami")
    return f"{a}---\nname: base_b\n{b.replace('title: Whoami', 'title: Whoami', 1)}---\n" + correlation


def _correlation(body: str, generate: bool = False) -> str:
    return ("title: Correlated\nid: 33333333-cccc-4ccc-8ccc-333333333333\nlevel: high\nstatus: test\n"
            f"correlation:\n{body}  generate: {str(generate).lower()}\n")


def _engine(body: str) -> CorrelationEngine:
    report = load_rules_text(_rules(_correlation(body)))
    assert not report.errors, [str(e) for e in report.errors]
    assert len(report.ruleset.correlations) == 1
    return CorrelationEngine(report.ruleset.correlations)


def _feed(engine: CorrelationEngine, stream: list[tuple[int, str, dict[str, Any]]]) -> list[CorrelationHit]:
    out: list[CorrelationHit] = []
    for seconds, rule, event in stream:
        out.extend(engine.observe(rule, event, T0 + timedelta(seconds=seconds)))
    return out


EVENT_COUNT = f"""  type: event_count
  rules: [{BASE_A}]
  group-by: [User]
  timespan: 1m
  condition: {{gte: 3}}
"""


def test_event_count_fires_on_three_in_a_minute_per_user() -> None:
    hits = _feed(_engine(EVENT_COUNT), [(0, BASE_A, {"User": "bob"}), (10, BASE_A, {"User": "eve"}),
                                        (20, BASE_A, {"User": "bob"}), (50, BASE_A, {"User": "bob"})])
    assert [(h.group, h.events) for h in hits] == [((("User", "bob"),), 3)]


def test_event_count_stays_quiet_when_spread_over_more_than_the_timespan() -> None:
    assert _feed(_engine(EVENT_COUNT), [(0, BASE_A, {"User": "bob"}), (40, BASE_A, {"User": "bob"}),
                                        (61, BASE_A, {"User": "bob"}), (130, BASE_A, {"User": "bob"})]) == []


VALUE_COUNT = f"""  type: value_count
  rules: [{BASE_A}]
  group-by: [Computer]
  timespan: 5m
  condition: {{gte: 3, field: TargetUser}}
"""


def test_value_count_counts_distinct_values() -> None:
    engine = _engine(VALUE_COUNT)
    quiet = _feed(engine, [(0, BASE_A, {"Computer": "h", "TargetUser": "a"}),
                           (1, BASE_A, {"Computer": "h", "TargetUser": "a"}),
                           (2, BASE_A, {"Computer": "h", "TargetUser": "b"})])
    assert quiet == []  # three events, two distinct users
    hits = _feed(engine, [(3, BASE_A, {"Computer": "h", "TargetUser": "c"})])
    assert [(h.group, h.events) for h in hits] == [((("Computer", "h"),), 3)]


TEMPORAL = f"""  type: temporal
  rules: [{BASE_A}, base_b]
  group-by: [Computer]
  timespan: 30s
"""


def test_temporal_needs_every_rule_within_the_timespan_by_id_or_name() -> None:
    engine = _engine(TEMPORAL)
    assert _feed(engine, [(0, BASE_B, {"Computer": "h"}), (31, BASE_A, {"Computer": "h"}),
                          (35, BASE_A, {"Computer": "other"})]) == []
    hits = _feed(engine, [(40, BASE_B, {"Computer": "h"})])
    assert [h.group for h in hits] == [(("Computer", "h"),)]


ORDERED = f"""  type: temporal_ordered
  rules: [{BASE_A}, base_b]
  group-by: [Computer]
  timespan: 30s
"""


def test_temporal_ordered_needs_the_order() -> None:
    engine = _engine(ORDERED)
    assert _feed(engine, [(0, BASE_B, {"Computer": "h"}), (5, BASE_A, {"Computer": "h"})]) == []
    hits = _feed(engine, [(10, BASE_B, {"Computer": "h"})])
    assert len(hits) == 1 and hits[0].first == T0 + timedelta(seconds=5)


def test_aliases_group_differently_named_fields() -> None:
    body = f"""  type: temporal
  rules: [{BASE_A}, {BASE_B}]
  group-by: [host]
  aliases:
    host:
      {BASE_A}: Computer
      {BASE_B}: Workstation
  timespan: 1m
"""
    engine = _engine(body)
    assert _feed(engine, [(0, BASE_A, {"Computer": "h1"}), (1, BASE_B, {"Workstation": "h2"})]) == []
    assert len(_feed(engine, [(2, BASE_B, {"Workstation": "h1"})])) == 1


def test_expire_drops_old_windows_with_the_callers_clock() -> None:
    engine = _engine(EVENT_COUNT)
    _feed(engine, [(0, BASE_A, {"User": "bob"}), (1, BASE_A, {"User": "bob"})])
    engine.expire(T0 + timedelta(minutes=10))
    assert _feed(engine, [(601, BASE_A, {"User": "bob"})]) == []


@pytest.mark.parametrize(("body", "reason"), [
    (f"  type: event_count\n  rules: [{BASE_A}]\n  timespan: 1m\n  condition: {{lt: 3}}\n", "only gt and gte"),
    ("  type: event_count\n  rules: [nope]\n  timespan: 1m\n  condition: {gte: 3}\n", "unknown rule 'nope'"),
])
def test_unsupported_correlations_are_reported(body: str, reason: str) -> None:
    report = load_rules_text(_rules(_correlation(body)))
    assert len(report.errors) == 1 and reason in report.errors[0].reason
    assert report.errors[0].kind in (ErrorKind.UNSUPPORTED, ErrorKind.PARSE)
    assert len(report.ruleset) == 2  # the base rules still load


def _detections(ruleset: Any, events: list[tuple[int, str]]) -> list[Detection]:
    out = []
    for seconds, command in events:
        event: dict[str, Any] = {"Channel": SYSMON, "EventID": 1, "User": "bob", "CommandLine": command}
        for hit in ruleset.match_windows(event):
            ts = (T0 + timedelta(seconds=seconds)).isoformat()
            context = tuple((f, str(event[f])) for f in ruleset.correlation_fields(hit.rule_id) or ())
            out.append(Detection(hit, Path("x.evtx"), ts, "h", SYSMON, "1", (), context))
    return out


@pytest.mark.parametrize("generate", [False, True])
def test_triage_adds_correlation_hits_and_hides_feeding_rules(generate: bool) -> None:
    ruleset = load_rules_text(_rules(_correlation(EVENT_COUNT, generate))).ruleset
    found = with_correlations(ruleset, _detections(ruleset, [(30, "net user a"), (0, "net user b"),
                                                             (15, "net user c"), (20, "whoami")]))
    titles = sorted(d.hit.title for d in found)
    assert titles == sorted(["Correlated", "Whoami"] + ["Net user"] * (3 if generate else 0))
    quiet = with_correlations(ruleset, _detections(ruleset, [(0, "net user a"), (100, "net user b")]))
    assert "Correlated" not in {d.hit.title for d in quiet}


def test_parse_time_reads_windows_times() -> None:
    assert parse_time("2020-10-17T11:43:45.1309221Z") == datetime(2020, 10, 17, 11, 43, 45, 130922, tzinfo=UTC)
    assert parse_time("2020-10-17 11:43:45") == datetime(2020, 10, 17, 11, 43, 45, tzinfo=UTC)
    assert parse_time("yesterday") is None
