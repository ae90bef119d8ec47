"""Rule loading: find Sigma files, parse them with pySigma, lower each rule to IR, collect every error."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sigma.collection import SigmaCollection
from sigma.conditions import SigmaCondition
from sigma.correlations import SigmaCorrelationCondition, SigmaCorrelationRule
from sigma.exceptions import SigmaError, SigmaRuleLocation
from sigma.filters import SigmaFilter
from sigma.modifiers import SigmaWideModifier, modifier_mapping
from sigma.rule import SigmaRule

from vigil.core.attack import tactics_from_tags, techniques_from_tags
from vigil.core.severity import RuleLevel
from vigil.detect.correlation import STREAMING_OPERATORS, Correlation, CorrelationKind
from vigil.detect.filtering import LoadedFilter
from vigil.detect.ir import Node, Or, UnsupportedFeature, simplify
from vigil.detect.lowering import lower_condition
from vigil.detect.model import ErrorKind, LoadedRule, LogSource, RuleInfo, RuleLoadError
from vigil.detect.placeholders import Placeholders, UnresolvedPlaceholder
from vigil.detect.sources import RuleSource, read_sources

# The Sigma specification names `utf16le` as an alias of `wide`; pySigma 2.0.1 knows only `wide`.
modifier_mapping.setdefault("utf16le", SigmaWideModifier)


@dataclass(frozen=True)
class PendingCorrelation:
    """A correlation rule whose references (rule ids or names, maybe in other files) are not resolved yet."""

    info: RuleInfo
    kind: CorrelationKind
    references: tuple[str, ...]
    timespan: float
    group_by: tuple[str, ...]
    operator: str
    count: float
    value_field: str | None
    aliases: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]  # alias -> (reference, field)
    generate: bool

    def resolve(self, ids: Mapping[str, str]) -> Correlation:
        """With `ids` (rule id or name -> id); raises KeyError naming the first unknown reference."""
        def rid(ref: str) -> str:
            if ref not in ids:
                raise KeyError(ref)
            return ids[ref]
        return Correlation(
            info=self.info, kind=self.kind, rules=tuple(rid(r) for r in self.references), timespan=self.timespan,
            group_by=self.group_by, operator=self.operator, count=self.count, value_field=self.value_field,
            aliases={a: {rid(r): f for r, f in m} for a, m in self.aliases}, generate=self.generate)


def _yaml_documents(text: str) -> list[Any]:
    # The C loader is several times faster than pySigma's default pure-Python one on thousands of rules.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [d for d in yaml.load_all(text, Loader=loader) if d is not None]


def _error_line(error: BaseException) -> str:
    mark = getattr(error, "problem_mark", None)
    return f" (line {mark.line + 1})" if mark is not None else ""


@dataclass(frozen=True)
class LoadedText:
    rules: list[LoadedRule]
    errors: list[RuleLoadError]
    correlations: list[PendingCorrelation]
    filters: list[LoadedFilter] = field(default_factory=list)  # applied by the caller, across files


def load_text(text: str, path: Path | None, placeholders: Placeholders | None = None) -> LoadedText:
    """Parse one file's text (one or more YAML documents) into rules, correlations, filters and errors;
    `placeholders` gives the values of `|expand` placeholders."""
    try:
        docs = _yaml_documents(text)
    except yaml.YAMLError as e:
        return LoadedText([], [RuleLoadError(path, ErrorKind.READ, f"invalid YAML{_error_line(e)}: {e}")], [])
    if not docs:
        return LoadedText([], [RuleLoadError(path, ErrorKind.PARSE, "the file holds no YAML document")], [])
    source = SigmaRuleLocation(path) if path else None
    try:
        # References are resolved and filters applied across all files by the caller: a correlation or a filter
        # may name a rule elsewhere.
        collection = SigmaCollection.from_dicts(docs, collect_errors=True, source=source, resolve_references=False,
                                                collect_filters=True)
    except (SigmaError, ValueError, TypeError, AttributeError, KeyError) as e:
        # pySigma raises some errors even in collect mode (odd types).
        return LoadedText([], [RuleLoadError(path, ErrorKind.PARSE, _sigma_reason(e))], [])
    rules: list[LoadedRule] = []
    correlations: list[PendingCorrelation] = []
    errors = [RuleLoadError(path, ErrorKind.PARSE, _sigma_reason(e)) for e in collection.errors
              if not _belongs_to_rule(e, collection)]
    for rule in collection:
        rid = str(rule.id) if rule.id else None
        if isinstance(rule, SigmaCorrelationRule):
            if rule.errors:
                errors.extend(RuleLoadError(path, ErrorKind.PARSE, _sigma_reason(e), rid, rule.title)
                              for e in rule.errors)
                continue
            try:
                correlations.append(_correlation(rule, path))
            except UnsupportedFeature as e:
                errors.append(RuleLoadError(path, ErrorKind.UNSUPPORTED, str(e), rid, rule.title))
            continue
        if not isinstance(rule, SigmaRule):  # pragma: no cover - pySigma has no other rule kinds
            errors.append(RuleLoadError(path, ErrorKind.UNSUPPORTED, f"{type(rule).__name__}", rid, rule.title))
            continue
        if rule.errors:
            errors.extend(RuleLoadError(path, ErrorKind.PARSE, _sigma_reason(e), rid, rule.title)
                          for e in rule.errors)
            continue
        try:
            rules.append(LoadedRule(_info(rule, path), _tree(rule.detection.parsed_condition, placeholders)))
        except _LOWERING_ERRORS as e:
            errors.append(_lowering_error(e, path, rid, rule.title))
    filters: list[LoadedFilter] = []
    for f in collection.filters:
        fid = str(f.id) if f.id else None
        if f.errors:
            errors.extend(RuleLoadError(path, ErrorKind.PARSE, _sigma_reason(e), fid, f.title) for e in f.errors)
            continue
        try:
            filters.append(_filter(f, path, placeholders))
        except _LOWERING_ERRORS as e:
            errors.append(_lowering_error(e, path, fid, f.title))
    return LoadedText(rules, errors, correlations, filters)


# What lowering a rule's or filter's condition may raise: each becomes that rule's error.
_LOWERING_ERRORS = (UnresolvedPlaceholder, UnsupportedFeature, SigmaError, ValueError, TypeError)


def _lowering_error(error: Exception, path: Path | None, rid: str | None, title: str) -> RuleLoadError:
    if isinstance(error, UnresolvedPlaceholder):
        return RuleLoadError(path, ErrorKind.PLACEHOLDER, str(error), rid, title)
    if isinstance(error, UnsupportedFeature):
        return RuleLoadError(path, ErrorKind.UNSUPPORTED, str(error), rid, title)
    return RuleLoadError(path, ErrorKind.PARSE, _sigma_reason(error), rid, title)


def _filter(f: SigmaFilter, path: Path | None, placeholders: Placeholders | None) -> LoadedFilter:
    refs = f.filter.rules
    ls = f.logsource
    return LoadedFilter(
        id=str(f.id) if f.id else (path.stem if path else f.title), title=f.title, path=path,
        logsource=LogSource(ls.product, ls.category, ls.service),
        rules=None if isinstance(refs, str) else tuple(r.reference for r in refs),  # a string is "any"
        tree=_tree(f.filter.parsed_condition, placeholders))


def _correlation(rule: SigmaCorrelationRule, path: Path | None) -> PendingCorrelation:
    kind_name = str(rule.type).lower()
    try:
        kind = CorrelationKind(kind_name)
    except ValueError:
        raise UnsupportedFeature(f"correlation type {kind_name} is not supported") from None
    condition = rule.condition
    operator, count, value_field = "gte", 1.0, None
    if kind in (CorrelationKind.EVENT_COUNT, CorrelationKind.VALUE_COUNT):
        if not isinstance(condition, SigmaCorrelationCondition):
            raise UnsupportedFeature("an extended condition on a count correlation")
        operator = condition.op.name.lower()
        if operator not in STREAMING_OPERATORS:
            raise UnsupportedFeature(f"correlation condition {operator!r} (only gt and gte can be decided "
                                     "while events stream in)")
        count = float(condition.count)
        if kind is CorrelationKind.VALUE_COUNT:
            if not isinstance(condition.fieldref, str):
                raise UnsupportedFeature("value_count needs one condition field")
            value_field = condition.fieldref
    if rule.timespan is None or not rule.timespan.seconds:
        raise UnsupportedFeature("a correlation without a timespan")
    references = tuple(r.reference for r in rule.rules or ())
    if not references:
        raise UnsupportedFeature("a correlation that references no rule")
    aliases = tuple((a.alias, tuple((ref.reference, f) for ref, f in a.mapping.items())) for a in rule.aliases)
    return PendingCorrelation(
        info=_info(rule, path), kind=kind, references=references, timespan=float(rule.timespan.seconds),
        group_by=tuple(rule.group_by or ()), operator=operator, count=count, value_field=value_field,
        aliases=aliases, generate=bool(rule.generate))


def _belongs_to_rule(error: SigmaError, collection: SigmaCollection) -> bool:
    return any(error in r.errors for r in (*collection, *collection.filters))


def _sigma_reason(error: BaseException) -> str:
    text = str(error)
    if isinstance(error, SigmaError) and error.source is not None:
        # pySigma appends the location; the report already names the file.
        text = text.replace(f" in {error.source}", "").rstrip()
    return text or type(error).__name__


def _tree(conditions: list[SigmaCondition], placeholders: Placeholders | None) -> Node:
    trees = []
    for condition in conditions:
        parsed = condition.parsed
        if parsed is None:
            raise UnsupportedFeature(f"condition {condition.condition!r} selects nothing")
        trees.append(lower_condition(parsed, placeholders))
    if not trees:
        raise UnsupportedFeature("the rule has no condition")
    return trees[0] if len(trees) == 1 else simplify(Or(tuple(trees)))


def _info(rule: SigmaRule | SigmaCorrelationRule, path: Path | None) -> RuleInfo:
    tags = tuple(f"{t.namespace}.{t.name}" for t in rule.tags)
    level = RuleLevel(str(rule.level).lower()) if rule.level is not None else RuleLevel.INFORMATIONAL
    ls = rule.logsource if isinstance(rule, SigmaRule) else None
    return RuleInfo(
        id=str(rule.id) if rule.id else (path.stem if path else rule.title),
        title=rule.title,
        description=(rule.description or "").strip(),
        level=level,
        status=str(rule.status).lower() if rule.status is not None else "",
        tags=tags,
        author=rule.author or "",
        references=tuple(rule.references),
        techniques=techniques_from_tags(tags),
        tactics=tactics_from_tags(tags),
        logsource=LogSource(ls.product, ls.category, ls.service) if ls is not None else LogSource(),
        path=path,
        falsepositives=tuple(str(f) for f in rule.falsepositives),
        name=rule.name,
    )


def load_source(source: RuleSource, placeholders: Placeholders | None = None) -> LoadedText:
    try:
        text = source.data.decode("utf-8")
    except UnicodeDecodeError as e:
        return LoadedText([], [RuleLoadError(source.path, ErrorKind.READ, str(e))], [])
    return load_text(text, source.path, placeholders)


def load_paths(paths: Iterable[Path]) -> Iterator[tuple[Path | None, list[LoadedRule], list[RuleLoadError]]]:
    """Per file: its rules and errors. Missing and unreadable paths come first, as errors."""
    sources, errors = read_sources(paths)
    if errors:
        yield None, [], errors
    for source in sources:
        loaded = load_source(source)
        yield source.path, loaded.rules, loaded.errors
