"""Sigma filters (`filter:` documents): each one's condition is and-ed to the rules it names, across files."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from vigil.detect.ir import And, Node, simplify
from vigil.detect.model import ErrorKind, LoadedRule, LogSource, Position, RuleLoadError


@dataclass(frozen=True)
class LoadedFilter:
    """A parsed filter. As in pySigma, a rule it applies to matches only when the filter's condition holds too,
    so an exclusion is written `condition: not selection`."""

    id: str
    title: str
    path: Path | None
    logsource: LogSource
    rules: tuple[str, ...] | None  # rule ids or names; None: every rule its log source covers (`rules: any`)
    tree: Node  # in Sigma field names
    position: Position | None = None  # where its YAML document starts

    def covers(self, logsource: LogSource) -> bool:
        """Whether each log source attribute the filter sets is the rule's too (the ones it omits are free)."""
        return all(mine is None or (theirs is not None and mine.lower() == theirs.lower())
                   for mine, theirs in ((self.logsource.product, logsource.product),
                                        (self.logsource.category, logsource.category),
                                        (self.logsource.service, logsource.service)))


def reference_key(reference: str) -> str:
    """A rule id in the form rule ids are kept in (pySigma's UUID text), or the reference as it is (a name)."""
    try:
        return str(uuid.UUID(reference))
    except ValueError:
        return reference


def apply_filters(rules: Sequence[LoadedRule], filters: Sequence[LoadedFilter],
                  errors: list[RuleLoadError]) -> list[LoadedRule]:
    """`rules` with the conditions of the filters that apply to them and-ed in. A reference that names no loaded
    rule, or a rule outside the filter's log source, is an error of the filter; it still filters the others."""
    if not filters:
        return list(rules)
    by_reference: dict[str, int] = {}
    for i, r in enumerate(rules):
        by_reference[r.info.id] = i
        if r.info.name:
            by_reference.setdefault(r.info.name, i)
    added: list[list[Node]] = [[] for _ in rules]
    for f in filters:
        targets: list[int] = []
        if f.rules is None:
            targets = [i for i, r in enumerate(rules) if f.covers(r.info.logsource)]
        for ref in f.rules or ():
            found = by_reference.get(reference_key(ref))
            if found is None:
                errors.append(RuleLoadError.at(f.position, f.path, ErrorKind.PARSE,
                                               f"filter names rule {ref!r}, which is not loaded (the filter still "
                                               "applies to the rules it names that are)", f.id, f.title))
            elif not f.covers(rules[found].info.logsource):
                errors.append(RuleLoadError.at(f.position, f.path, ErrorKind.PARSE,
                                               f"filter names rule {ref!r}, whose log source "
                                               f"({rules[found].info.logsource}) is outside the filter's "
                                               f"({f.logsource}); not applied to it", f.id, f.title))
            else:
                targets.append(found)
        for i in dict.fromkeys(targets):
            added[i].append(f.tree)
    return [replace(r, tree=simplify(And((r.tree, *extra)))) if extra else r
            for r, extra in zip(rules, added, strict=True)]
