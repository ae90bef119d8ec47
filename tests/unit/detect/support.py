"""Builders for self-made Sigma rules and events used across the detection tests."""

from __future__ import annotations

import textwrap
import uuid
from typing import Any

from vigil.detect import LoadReport, RuleSet, candidates, events, load_rules_text, ruleset

# The modules whose `_speedups` decides between the C hot path and the pure-Python engine.
ENGINE_MODULES = (candidates, events, ruleset)


def python_twin(rules: RuleSet) -> RuleSet:
    """The same compiled rules on the pure-Python matcher, to compare with inside a test on the C path."""
    return RuleSet(rules.rules, rules.code, rules.correlations, native=False)


SYSMON = "Microsoft-Windows-Sysmon/Operational"


def rule_yaml(detection: str, *, logsource: str = "product: windows\ncategory: process_creation",
              rule_id: str | None = None, title: str = "Test rule", level: str = "high",
              tags: tuple[str, ...] = ("attack.execution", "attack.t1059.004")) -> str:
    tag_lines = "".join(f"\n    - {t}" for t in tags)
    return (
        f"title: {title}\n"
        f"id: {rule_id or uuid.uuid4()}\n"
        "status: test\n"
        f"level: {level}\n"
        "author: Vigil tests\n"
        f"tags:{tag_lines}\n"
        "logsource:\n" + textwrap.indent(logsource, "    ") + "\n"
        "detection:\n" + textwrap.indent(textwrap.dedent(detection).strip("\n"), "    ") + "\n"
    )


def report_for(detection: str, **kw: Any) -> LoadReport:
    report = load_rules_text(rule_yaml(detection, **kw))
    assert not report.errors, [str(e) for e in report.errors]
    return report


def ruleset_for(detection: str, **kw: Any) -> RuleSet:
    return report_for(detection, **kw).ruleset


def sysmon(**fields: Any) -> dict[str, Any]:
    """A flattened Sysmon process-creation event."""
    return {"Channel": SYSMON, "EventID": 1, **fields}


def matches(ruleset: RuleSet, **fields: Any) -> bool:
    return bool(ruleset.match_windows(sysmon(**fields)))
