"""ASR rules, modes, exclusions and per-device-group policy: pure, no store, server or framework import.

A rule is a predicate over one telemetry row (a mapping of Defender's column names, as the agent sends them and
the store keeps them). A policy gives each rule a mode and lists exclusions; ``evaluate`` returns the decisions
a row draws under a policy.

Precedence (docs/asr-and-indicators.md, "Policy and precedence"):
1. The device's group policy sets the mode of the rules it names; a rule it does not name takes the tenant
   default policy's mode; a rule neither names is Off.
2. Off means the rule is not evaluated at all.
3. Exclusions only exempt, never add: a row is exempt from a rule when any exclusion matches it, whether the
   exclusion is global or for that rule, in the group policy or in the default policy (their union).
4. An exclusion by ``path`` matches the row's target (``FolderPath``: the executable started or the file
   written); by ``process`` it matches the acting process (``InitiatingProcessFolderPath``, or its file name).
"""

from __future__ import annotations

import enum
import fnmatch
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Row = Mapping[str, Any]


class AsrMode(enum.IntEnum):
    """Defender's values for an ASR rule's state."""

    OFF = 0
    BLOCK = 1
    AUDIT = 2
    WARN = 6

    @classmethod
    def parse(cls, value: object) -> AsrMode:
        """A mode from its number (0, 1, 2, 6) or its name (Off, Block, Audit, Warn); a clear error otherwise."""
        if isinstance(value, str):
            text = value.strip()
            if text.isdigit():
                value = int(text)
            else:
                for mode in cls:
                    if mode.name.lower() == text.lower():
                        return mode
                raise ValueError(f"unknown ASR mode {value!r}: use Off (0), Block (1), Audit (2) or Warn (6)")
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                return cls(value)
            except ValueError:
                pass
        raise ValueError(f"unknown ASR mode {value!r}: use Off (0), Block (1), Audit (2) or Warn (6)")

    @property
    def verb(self) -> str:
        """The suffix of the DeviceEvents action type: Blocked, Audited, Warned."""
        return {AsrMode.BLOCK: "Blocked", AsrMode.AUDIT: "Audited", AsrMode.WARN: "Warned"}.get(self, "")


@dataclass(frozen=True)
class AsrRule:
    """One rule of the catalogue."""

    guid: str
    name: str  # CamelCase; the DeviceEvents action type is Asr<name><Blocked|Audited|Warned>
    title: str
    description: str
    technique: str  # ATT&CK technique id
    table: str  # the telemetry table whose rows the predicate reads
    predicate: Callable[[Row], bool]
    limits: str = ""
    tactic: str = ""  # the ATT&CK tactic, as Defender names it on alerts (vigil.core.attack.AttackTactic)

    def matches(self, table: str, row: Row) -> bool:
        return table == self.table and bool(self.predicate(row))

    def action_type(self, mode: AsrMode) -> str:
        return f"Asr{self.name}{mode.verb}"


@dataclass(frozen=True)
class Exclusion:
    """Exempts rows by target path or by acting process. ``pattern`` is a glob (``*`` crosses ``/``) over the full
    path, or, without a ``/``, a glob over the file name only."""

    pattern: str
    kind: str = "path"  # "path" (the row's FolderPath) or "process" (the initiating process)

    def __post_init__(self) -> None:
        if self.kind not in ("path", "process"):
            raise ValueError(f"exclusion kind {self.kind!r}: use 'path' or 'process'")
        if not self.pattern.strip():
            raise ValueError("an exclusion needs a non-empty pattern")

    def matches(self, row: Row) -> bool:
        if self.kind == "path":
            return _glob(self.pattern, str(row.get("FolderPath") or ""))
        path = str(row.get("InitiatingProcessFolderPath") or "")
        name = str(row.get("InitiatingProcessFileName") or "")
        return _glob(self.pattern, path) or ("/" not in self.pattern and _glob(self.pattern, name))


def _glob(pattern: str, path: str) -> bool:
    if not path:
        return False
    if "/" not in pattern:
        return fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], pattern)
    return fnmatch.fnmatchcase(path, pattern)


@dataclass(frozen=True)
class AsrPolicy:
    """One policy: modes by rule GUID, global exclusions and exclusions by rule GUID."""

    modes: Mapping[str, AsrMode] = field(default_factory=dict)
    exclusions: tuple[Exclusion, ...] = ()
    rule_exclusions: Mapping[str, tuple[Exclusion, ...]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The policy as JSON (stored, signed to agents): modes by GUID as Defender's numbers."""
        def excl(items: Iterable[Exclusion]) -> list[dict[str, str]]:
            return [{"pattern": e.pattern, "kind": e.kind} for e in items]

        return {"modes": {guid: int(mode) for guid, mode in sorted(self.modes.items())},
                "exclusions": excl(self.exclusions),
                "ruleExclusions": {guid: excl(items) for guid, items in sorted(self.rule_exclusions.items())}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AsrPolicy:
        """The inverse of ``to_json``; a ValueError naming the field otherwise."""
        def excl(items: object, where: str) -> tuple[Exclusion, ...]:
            if not isinstance(items, list):
                raise ValueError(f"{where} must be a list of {{pattern, kind}}")
            out = []
            for i, item in enumerate(items):
                if not isinstance(item, Mapping) or not isinstance(item.get("pattern"), str):
                    raise ValueError(f"{where}[{i}] must be {{\"pattern\": ..., \"kind\": \"path\"|\"process\"}}")
                try:
                    out.append(Exclusion(item["pattern"], str(item.get("kind", "path"))))
                except ValueError as e:
                    raise ValueError(f"{where}[{i}]: {e}") from None
            return tuple(out)

        modes_in = data.get("modes", {})
        if not isinstance(modes_in, Mapping):
            raise ValueError("modes must map rule GUIDs to a mode")
        modes = {}
        for guid, value in modes_in.items():
            try:
                modes[str(guid).lower()] = AsrMode.parse(value)
            except ValueError as e:
                raise ValueError(f"modes[{guid}]: {e}") from None
        rule_ex = data.get("ruleExclusions", {})
        if not isinstance(rule_ex, Mapping):
            raise ValueError("ruleExclusions must map rule GUIDs to lists of exclusions")
        return cls(modes, excl(data.get("exclusions", []), "exclusions"),
                   {str(g).lower(): excl(v, f"ruleExclusions[{g}]") for g, v in rule_ex.items()})


@dataclass(frozen=True)
class AsrPolicySet:
    """The tenant default policy and the policies of device groups (by group id)."""

    default: AsrPolicy = field(default_factory=AsrPolicy)
    groups: Mapping[int, AsrPolicy] = field(default_factory=dict)

    def mode(self, guid: str, group_id: int | None) -> AsrMode:
        group = self.groups.get(group_id) if group_id is not None else None
        if group is not None and guid in group.modes:
            return group.modes[guid]
        return self.default.modes.get(guid, AsrMode.OFF)

    def exempt(self, guid: str, group_id: int | None, row: Row) -> bool:
        policies = [self.default]
        if group_id is not None and group_id in self.groups:
            policies.append(self.groups[group_id])
        for policy in policies:
            for exclusion in (*policy.exclusions, *policy.rule_exclusions.get(guid, ())):
                if exclusion.matches(row):
                    return True
        return False


@dataclass(frozen=True)
class AsrDecision:
    rule: AsrRule
    mode: AsrMode

    @property
    def action_type(self) -> str:
        return self.rule.action_type(self.mode)

    @property
    def prevents(self) -> bool:
        """Block and Warn deny (Warn until overridden); Audit only records."""
        return self.mode in (AsrMode.BLOCK, AsrMode.WARN)


def evaluate(
    rules: Iterable[AsrRule], policies: AsrPolicySet, group_id: int | None, table: str, row: Row
) -> list[AsrDecision]:
    """The decisions ``row`` (of ``table``, from a device in ``group_id``) draws: one per rule that is not Off,
    matches and is not exempt."""
    decisions = []
    for rule in rules:
        mode = policies.mode(rule.guid, group_id)
        if mode is AsrMode.OFF or rule.table != table:
            continue
        if rule.matches(table, row) and not policies.exempt(rule.guid, group_id, row):
            decisions.append(AsrDecision(rule, mode))
    return decisions
