"""One assembly of parsed rule files, shared by every load: duplicate ids, filters, the rule filter, correlations."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from vigil.detect.correlation import Correlation
from vigil.detect.filtering import LoadedFilter, apply_filters
from vigil.detect.loading import LoadedText, PendingCorrelation
from vigil.detect.model import ErrorKind, LoadedRule, RuleFilter, RuleLoadError


@dataclass(frozen=True)
class Assembled:
    """The rules to compile, with their correlations resolved, and every error met on the way."""

    rules: tuple[LoadedRule, ...]
    correlations: tuple[Correlation, ...]
    errors: tuple[RuleLoadError, ...]


def assemble(files: Iterable[LoadedText], rule_filter: RuleFilter | None = None,
             errors: Sequence[RuleLoadError] = ()) -> Assembled:
    """Rules of parsed files in order: a repeated id is an error of the later rule; Sigma filters apply across
    files (resolved against every loaded rule, since the rule filter may leave out a rule a filter names);
    then the rule filter; then correlations resolved against what is left. `errors`: met before parsing."""
    found = list(errors)
    rules: list[LoadedRule] = []
    pending: list[PendingCorrelation] = []
    filters: list[LoadedFilter] = []
    seen: dict[str, LoadedRule] = {}
    for loaded in files:
        found.extend(loaded.errors)
        filters.extend(loaded.filters)
        pending.extend(c for c in loaded.correlations if rule_filter is None or rule_filter.keeps(c.info))
        for rule in loaded.rules:
            first = seen.get(rule.info.id)
            if first is not None:
                found.append(RuleLoadError.at(rule.position, rule.info.path, ErrorKind.DUPLICATE,
                                           f"rule id already loaded from {first.info.path or '<string>'}",
                                           rule.info.id, rule.info.title))
                continue
            seen[rule.info.id] = rule
            rules.append(rule)
    kept = [r for r in apply_filters(rules, filters, found) if rule_filter is None or rule_filter.keeps(r.info)]
    correlations = _resolve(pending, kept, found)
    return Assembled(tuple(kept), correlations, tuple(found))


def _resolve(pending: Sequence[PendingCorrelation], rules: Sequence[LoadedRule],
             errors: list[RuleLoadError]) -> tuple[Correlation, ...]:
    """Correlations with references turned into rule ids; an unknown reference is the correlation's error."""
    ids: dict[str, str] = {}
    for r in rules:
        ids[r.info.id] = r.info.id
        if r.info.name:
            ids.setdefault(r.info.name, r.info.id)
    out: list[Correlation] = []
    for p in pending:
        try:
            out.append(p.resolve(ids))
        except KeyError as e:
            errors.append(RuleLoadError.at(p.position, p.info.path, ErrorKind.PARSE,
                                        f"correlation references unknown rule {e.args[0]!r} (not loaded, or "
                                        "itself a correlation: chained correlations are not supported)",
                                        p.info.id, p.info.title))
    return tuple(out)
