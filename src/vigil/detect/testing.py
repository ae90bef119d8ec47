"""Golden tests for rules (detection as code): events in, the exact set of rule ids expected out."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vigil.detect.ruleset import RuleSet

GOLDEN_GLOB = "tests/*.json"


class GoldenFileError(Exception):
    """A golden file that is not valid; names the file and the case."""


@dataclass(frozen=True)
class CaseResult:
    path: Path
    name: str
    expected: frozenset[str]
    actual: frozenset[str]

    @property
    def passed(self) -> bool:
        return self.expected == self.actual


def golden_files(paths: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(sorted(path.rglob(GOLDEN_GLOB)))
        elif path.suffix == ".json":
            out.append(path)
    return out


def _cases(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise GoldenFileError(f"{path}: {e}") from e
    cases = data.get("cases") if isinstance(data, dict) else None
    if not isinstance(cases, list):
        raise GoldenFileError(f"{path}: expected an object with a list of cases")
    for i, case in enumerate(cases):
        name = case.get("name", f"case {i + 1}") if isinstance(case, dict) else f"case {i + 1}"
        if not isinstance(case, dict) or not isinstance(case.get("event"), dict) \
                or not isinstance(case.get("expect"), list):
            raise GoldenFileError(f"{path}: {name}: needs an `event` object and an `expect` list")
    return cases


def run_golden(ruleset: RuleSet, files: Iterable[Path]) -> list[CaseResult]:
    """Run every case; an event with `table` is a telemetry row, otherwise a (flat or pyevtx) Windows event."""
    results: list[CaseResult] = []
    for path in files:
        for i, case in enumerate(_cases(path)):
            table = case.get("table")
            event = case["event"]
            hits = ruleset.match_telemetry(table, event) if table else ruleset.match_event(event)
            results.append(CaseResult(path, str(case.get("name", f"case {i + 1}")),
                                      frozenset(str(x) for x in case["expect"]),
                                      frozenset(h.rule_id for h in hits)))
    return results
