"""Back-testing: Sigma rules run over stored telemetry through the same compiled matchers as live detection
(``RuleSet.match_telemetry``), and their hits counted into the alerts live detection would have raised — hits
of one rule on one device fold into one alert within the dedup window (``vigil.core.alerts.folds_into``).

Pure: rows in, a summary out. The service reads the rows back from the store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from vigil.core.alerts import AlertStatus, OpenAlert, folds_into
from vigil.detect import RuleSet

SAMPLES = 5  # example events kept per rule


@dataclass
class RuleSummary:
    rule_id: str
    title: str
    severity: str
    hits: int = 0
    alerts: int = 0
    devices: dict[str, int] = field(default_factory=dict)  # alerts per device
    samples: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"ruleId": self.rule_id, "title": self.title, "severity": self.severity, "hits": self.hits,
                "alerts": self.alerts, "devices": dict(sorted(self.devices.items())), "samples": self.samples}


def _aware(t: Any) -> datetime | None:
    if isinstance(t, datetime):
        return t if t.tzinfo else t.replace(tzinfo=UTC)
    if isinstance(t, str):
        try:
            return _aware(datetime.fromisoformat(t))
        except ValueError:
            return None
    return None


def _sample(table: str, row: Mapping[str, Any]) -> dict[str, Any]:
    return {"Table": table, **{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()
                               if v is not None}}


class Backtest:
    """Feed rows in the order live ingest would have seen them; ``rule_ids`` limits the rules counted."""

    def __init__(self, ruleset: RuleSet, rule_ids: Iterable[str] | None = None) -> None:
        self.ruleset = ruleset
        self.only = set(rule_ids) if rule_ids is not None else None
        self.events = 0
        self.rules: dict[str, RuleSummary] = {}
        self._open: dict[tuple[str, str], OpenAlert] = {}

    def feed(self, table: str, row: Mapping[str, Any]) -> None:
        self.events += 1
        for h in self.ruleset.match_telemetry(table, row):
            if self.only is not None and h.rule_id not in self.only:
                continue
            at = _aware(row.get("Timestamp"))
            if at is None:
                continue
            s = self.rules.get(h.rule_id)
            if s is None:
                s = self.rules[h.rule_id] = RuleSummary(h.rule_id, h.title, h.severity.value)
            s.hits += 1
            device = str(row.get("DeviceId"))
            key = (device, h.rule_id)
            cur = self._open.get(key)
            if folds_into(cur, at):
                assert cur is not None
                self._open[key] = OpenAlert(cur.id, cur.status, max(cur.last_event_time, at))
                continue
            s.alerts += 1
            s.devices[device] = s.devices.get(device, 0) + 1
            self._open[key] = OpenAlert(f"{device}/{h.rule_id}/{s.alerts}", AlertStatus.NEW, at)
            if len(s.samples) < SAMPLES:
                s.samples.append(_sample(table, row))

    def run(self, rows: Iterable[tuple[str, Mapping[str, Any]]], total: int | None = None,
            progress: Callable[[int, int | None], None] | None = None, every: int = 10_000) -> None:
        for table, row in rows:
            self.feed(table, row)
            if progress is not None and self.events % every == 0:
                progress(self.events, total)
        if progress is not None:
            progress(self.events, total)

    def summary(self) -> dict[str, Any]:
        rules = sorted(self.rules.values(), key=lambda s: (-s.alerts, s.rule_id))
        return {"events": self.events, "alerts": sum(s.alerts for s in rules),
                "rules": [s.as_json() for s in rules]}
