"""Sigma correlation rules: event_count, value_count, temporal and temporal_ordered over rule hits, streaming.

The engine is pure: it sees (rule id, event fields, event time) in time order and keeps per-group windows;
nothing reads a clock. Call `expire(now)` with the caller's clock to drop windows older than the timespan.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from vigil.detect.model import RuleInfo


class CorrelationKind(StrEnum):
    EVENT_COUNT = "event_count"
    VALUE_COUNT = "value_count"
    TEMPORAL = "temporal"
    TEMPORAL_ORDERED = "temporal_ordered"


# Operators decidable while events stream in: a window that grows can only newly satisfy these.
STREAMING_OPERATORS = frozenset({"gt", "gte"})


@dataclass(frozen=True)
class Correlation:
    """A correlation rule with its references resolved to rule ids (in the rule's order)."""

    info: RuleInfo
    kind: CorrelationKind
    rules: tuple[str, ...]
    timespan: float  # seconds
    group_by: tuple[str, ...] = ()
    operator: str = "gte"  # event_count / value_count: gt or gte
    count: float = 1
    value_field: str | None = None  # value_count: the field whose distinct values are counted
    aliases: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # alias -> rule id -> field
    generate: bool = False  # whether the referenced rules also report their own hits

    def group_field(self, name: str, rule_id: str) -> str:
        return self.aliases.get(name, {}).get(rule_id, name)

    def fields_for(self, rule_id: str) -> tuple[str, ...]:
        """The event fields this correlation reads from a hit of `rule_id`."""
        names = [self.group_field(g, rule_id) for g in self.group_by]
        if self.value_field:
            names.append(self.value_field)
        return tuple(names)


@dataclass(frozen=True)
class CorrelationHit:
    """A correlation that fired: its rule, the group's values and the events (hit times) that made it fire."""

    correlation: Correlation
    group: tuple[tuple[str, str | None], ...]
    first: datetime
    last: datetime
    events: int


def _value(event: Mapping[str, Any], name: str) -> str | None:
    v = event.get(name)
    return None if v is None else str(v)


class CorrelationEngine:
    """Streaming evaluation of correlations; feed hits in time order with `observe`.

    A group fires once and then starts over, so a burst of events yields one correlation hit, not one per
    event past the threshold.
    """

    def __init__(self, correlations: Sequence[Correlation]) -> None:
        self.correlations = tuple(correlations)
        self._by_rule: dict[str, list[Correlation]] = {}
        for c in self.correlations:
            for r in dict.fromkeys(c.rules):
                self._by_rule.setdefault(r, []).append(c)
        # (correlation index, group) -> state: deque of times, value -> time, or rule -> deque of times
        self._state: dict[tuple[int, tuple[str | None, ...]], Any] = {}
        self._index = {id(c): i for i, c in enumerate(self.correlations)}

    def wants(self, rule_id: str) -> bool:
        return rule_id in self._by_rule

    def observe(self, rule_id: str, event: Mapping[str, Any], at: datetime) -> list[CorrelationHit]:
        """Record a hit of `rule_id` on `event` at time `at`; returns the correlations that fire now."""
        fired: list[CorrelationHit] = []
        for c in self._by_rule.get(rule_id, ()):
            group = tuple(_value(event, c.group_field(g, rule_id)) for g in c.group_by)
            key = (self._index[id(c)], group)
            hit = self._step(c, key, rule_id, event, at)
            if hit is not None:
                fired.append(CorrelationHit(c, tuple(zip(c.group_by, group, strict=True)), *hit))
        return fired

    def expire(self, now: datetime) -> None:
        """Forget windows whose newest event is older than their timespan (bounds memory when streaming)."""
        for key in list(self._state):
            c = self.correlations[key[0]]
            if (now - self._newest(self._state[key])).total_seconds() > c.timespan:
                del self._state[key]

    @staticmethod
    def _newest(state: Any) -> datetime:
        if isinstance(state, deque):
            return state[-1]  # type: ignore[no-any-return]
        return max(t[-1] if isinstance(t, deque) else t for t in state.values())  # type: ignore[no-any-return]

    def _step(self, c: Correlation, key: tuple[int, tuple[str | None, ...]], rule_id: str,
              event: Mapping[str, Any], at: datetime) -> tuple[datetime, datetime, int] | None:
        span = c.timespan
        if c.kind is CorrelationKind.EVENT_COUNT:
            times: deque[datetime] = self._state.setdefault(key, deque())
            times.append(at)
            while (at - times[0]).total_seconds() > span:
                times.popleft()
            if _holds(len(times), c.operator, c.count):
                del self._state[key]
                return times[0], at, len(times)
            return None
        if c.kind is CorrelationKind.VALUE_COUNT:
            assert c.value_field is not None
            value = _value(event, c.value_field)
            seen: dict[str, datetime] = self._state.setdefault(key, {})
            if value is not None:
                seen[value] = at
            for v in [v for v, t in seen.items() if (at - t).total_seconds() > span]:
                del seen[v]
            if seen and _holds(len(seen), c.operator, c.count):
                first = min(seen.values())
                del self._state[key]
                return first, at, len(seen)
            return None
        per_rule: dict[str, deque[datetime]] = self._state.setdefault(key, {})
        per_rule.setdefault(rule_id, deque()).append(at)
        for times in per_rule.values():
            while times and (at - times[0]).total_seconds() > span:
                times.popleft()
        if c.kind is CorrelationKind.TEMPORAL:
            if all(per_rule.get(r) for r in c.rules):
                first = min(per_rule[r][0] for r in c.rules)
                count = sum(len(per_rule[r]) for r in set(c.rules))
                del self._state[key]
                return first, at, count
            return None
        # temporal_ordered: rules[0] <= rules[1] <= ... in time, the last one now, all within the span.
        if rule_id != c.rules[-1]:
            return None
        bound = at
        for r in reversed(c.rules[:-1]):
            earlier = [t for t in per_rule.get(r, ()) if t <= bound]
            if not earlier:
                return None
            bound = earlier[-1]
        if (at - bound).total_seconds() > span:
            return None
        del self._state[key]
        return bound, at, len(c.rules)


def _holds(n: float, operator: str, count: float) -> bool:
    return n > count if operator == "gt" else n >= count


def parse_time(value: object) -> datetime | None:
    """An event time (ISO 8601, `Z` allowed, or a datetime) in UTC when no zone is given; None when unreadable."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace(" ", "T", 1)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    if "." in text:  # Windows gives 7 fractional digits; datetime takes at most 6
        head, _, tail = text.partition(".")
        digits = "".join(ch for ch in tail if ch.isdigit())
        text = f"{head}.{digits[:6]}{tail[len(digits):]}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def correlate(correlations: Sequence[Correlation],
              hits: Iterable[tuple[datetime, str, Mapping[str, Any]]]) -> list[CorrelationHit]:
    """Run correlations over (time, rule id, event fields) hits, sorted here by time (stable)."""
    engine = CorrelationEngine(correlations)
    out: list[CorrelationHit] = []
    for at, rule_id, event in sorted(hits, key=lambda h: h[0]):
        out.extend(engine.observe(rule_id, event, at))
    return out
