"""The detection engine's value types: rule metadata, parsed rules, hits, load errors and notes."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from vigil.core.attack import AttackTactic
from vigil.core.severity import RuleLevel, Severity
from vigil.detect.ir import Node

Position = tuple[int, int]  # in a rule file: line and column, both counted from 1


@dataclass(frozen=True)
class LogSource:
    product: str | None = None
    category: str | None = None
    service: str | None = None

    def __str__(self) -> str:
        parts = [f"{k}={v}" for k, v in (("product", self.product), ("category", self.category),
                                          ("service", self.service)) if v]
        return ",".join(parts) or "(empty)"


@dataclass(frozen=True)
class RuleInfo:
    """What an analyst needs to know about a rule; the compiled matcher lives elsewhere."""

    id: str
    title: str
    description: str
    level: RuleLevel
    status: str
    tags: tuple[str, ...]
    author: str
    references: tuple[str, ...]
    techniques: tuple[str, ...]
    tactics: tuple[AttackTactic, ...]
    logsource: LogSource
    path: Path | None
    falsepositives: tuple[str, ...] = ()
    name: str | None = None  # Sigma's `name`: what correlation rules may reference instead of the id

    @property
    def severity(self) -> Severity:
        return self.level.severity


@dataclass(frozen=True)
class LoadedRule:
    """A parsed rule: its metadata and its condition lowered to IR, in Sigma field names."""

    info: RuleInfo
    tree: Node
    position: Position | None = None  # where its YAML document starts


@dataclass(frozen=True)
class RuleHit:
    """One rule matching one event."""

    rule_id: str
    title: str
    description: str
    level: RuleLevel
    severity: Severity
    status: str
    tags: tuple[str, ...]
    author: str
    references: tuple[str, ...]
    techniques: tuple[str, ...]
    tactics: tuple[AttackTactic, ...]
    path: Path | None
    matched_fields: tuple[str, ...] = ()

    @classmethod
    def of(cls, rule: RuleInfo, matched_fields: tuple[str, ...] = ()) -> RuleHit:
        return cls(
            rule_id=rule.id,
            title=rule.title,
            description=rule.description,
            level=rule.level,
            severity=rule.level.severity,
            status=rule.status,
            tags=rule.tags,
            author=rule.author,
            references=rule.references,
            techniques=rule.techniques,
            tactics=rule.tactics,
            path=rule.path,
            matched_fields=matched_fields,
        )


class ErrorKind(StrEnum):
    READ = "read"  # the file could not be read or is not YAML
    PARSE = "parse"  # pySigma rejected the rule
    UNSUPPORTED = "unsupported"  # valid Sigma that the engine cannot run (some correlations...)
    PLACEHOLDER = "placeholder"  # an |expand placeholder that no value was given for
    DUPLICATE = "duplicate"  # another rule already has this id


@dataclass(frozen=True)
class RuleLoadError:
    """A rule (or file) that did not load, with where and why: the file, and the line and column (from 1) of
    the key or value at fault (else of the rule's document; none for a file that could not be read)."""

    path: Path | None
    kind: ErrorKind
    reason: str
    rule_id: str | None = None
    title: str | None = None
    line: int | None = None
    column: int | None = None

    @classmethod
    def at(cls, position: Position | None, path: Path | None, kind: ErrorKind, reason: str,
           rule_id: str | None = None, title: str | None = None) -> RuleLoadError:
        line, column = position if position is not None else (None, None)
        return cls(path, kind, reason, rule_id, title, line, column)

    @property
    def where(self) -> str:
        """`file:line:column`, as editors and compilers write it."""
        where = str(self.path) if self.path else "<string>"
        if self.line is not None:
            where += f":{self.line}" + (f":{self.column}" if self.column is not None else "")
        return where

    def __str__(self) -> str:
        rule = f" [{self.rule_id}]" if self.rule_id else ""
        return f"{self.where}{rule}: {self.kind}: {self.reason}"


@dataclass(frozen=True)
class RuleNote:
    """A rule that loaded but cannot see any event source (for example no Vigil telemetry for auditd)."""

    path: Path | None
    rule_id: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path or '<string>'} [{self.rule_id}]: {self.reason}"


@dataclass(frozen=True)
class AbsentFields:
    """Fields a rule names that one of its event sources does not carry: tests on them are those on a missing
    field there (false; `field: null` and `|exists: false` true), and the branches they decide are pruned."""

    path: Path | None
    rule_id: str
    source: str
    fields: tuple[str, ...]
    bound: bool = True  # False: no branch of the rule can match on this source, which it then does not run on

    def __str__(self) -> str:
        unbound = " (no branch can match there)" if not self.bound else ""
        return f"{self.path or '<string>'} [{self.rule_id}]: on {self.source} absent: {', '.join(self.fields)}{unbound}"


@dataclass(frozen=True)
class RuleFilter:
    """Which rules to keep: a minimum level, allowed statuses and required tags (any of them)."""

    min_level: RuleLevel | None = None
    statuses: frozenset[str] = field(default_factory=frozenset)
    tags: frozenset[str] = field(default_factory=frozenset)

    def keeps(self, rule: RuleInfo) -> bool:
        if self.min_level is not None and rule.level.rank < self.min_level.rank:
            return False
        if self.statuses and rule.status not in self.statuses:
            return False
        return not self.tags or any(t.lower() in self.tags for t in rule.tags)
