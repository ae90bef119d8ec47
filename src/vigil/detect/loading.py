"""Rule loading: find Sigma files, parse them with pySigma, lower each rule to IR, collect every error."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from sigma.collection import SigmaCollection
from sigma.conditions import SigmaCondition
from sigma.correlations import SigmaCorrelationCondition, SigmaCorrelationRule
from sigma.exceptions import SigmaError, SigmaRuleLocation
from sigma.filters import SigmaFilter
from sigma.rule import SigmaRule

from vigil.core.attack import tactics_from_tags, techniques_from_tags
from vigil.core.severity import RuleLevel
from vigil.detect.correlation import STREAMING_OPERATORS, Correlation, CorrelationKind
from vigil.detect.filtering import LoadedFilter
from vigil.detect.ir import Node, Or, RuleContentError, UnsupportedFeature, simplify
from vigil.detect.locations import (
    Document,
    key_position,
    locate,
    mention_position,
    read_documents,
    yaml_error_position,
    yaml_error_reason,
)
from vigil.detect.lowering import lower_condition
from vigil.detect.model import ErrorKind, LoadedRule, LogSource, Position, RuleInfo, RuleLoadError
from vigil.detect.placeholders import Placeholders, UnresolvedPlaceholder
from vigil.detect.sources import RuleSource, read_sources

# Modifier names the Sigma specification has and pySigma 2.0.1 does not (`utf16le` is an alias of `wide`): spelled
# the pySigma way in each rule as it is parsed, rather than added to pySigma's module-global modifier table.
_MODIFIER_ALIASES = {"utf16le": "wide"}


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
    position: Position | None = None  # where its YAML document starts

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


@dataclass(frozen=True)
class LoadedText:
    rules: list[LoadedRule]
    errors: list[RuleLoadError]
    correlations: list[PendingCorrelation]
    filters: list[LoadedFilter] = field(default_factory=list)  # applied by the caller, across files


def load_text(text: str, path: Path | None, placeholders: Placeholders | None = None) -> LoadedText:
    """Parse one file's text (one or more YAML documents) into rules, correlations, filters and errors, each
    error at its line and column; `placeholders` gives the values of `|expand` placeholders."""
    try:
        documents = read_documents(text)
    except yaml.YAMLError as e:
        return LoadedText([], [RuleLoadError.at(yaml_error_position(e), path, ErrorKind.READ,
                                                f"invalid YAML: {yaml_error_reason(e)}")], [])
    if not documents:
        return LoadedText([], [RuleLoadError(path, ErrorKind.PARSE, "the file holds no YAML document")], [])
    out = LoadedText([], [], [], [])
    # Each document is parsed alone, so that pySigma's location of its errors is that document's; only a file
    # with `action:` documents (global/repeat, which merge documents) is parsed as one collection.
    merged = any(isinstance(d.data, dict) and "action" in d.data for d in documents)
    for group in ([documents] if merged else [[d] for d in documents]):
        _load_documents(group, path, placeholders, out)
    return out


def _load_documents(documents: list[Document], path: Path | None, placeholders: Placeholders | None,
                    out: LoadedText) -> None:
    usable: list[Document] = []
    for candidate in documents:
        problem = _shape_problem(candidate)
        if problem is not None:
            data = candidate.data if isinstance(candidate.data, dict) else {}
            rid, title = data.get("id"), data.get("title")
            out.errors.append(RuleLoadError.at(problem[0], path, ErrorKind.PARSE, problem[1],
                                               rid if isinstance(rid, str) else None,
                                               title if isinstance(title, str) else None))
        else:
            usable.append(candidate)
    if not usable:
        return
    one: Document | None = usable[0] if len(usable) == 1 else None
    source = None
    if path is not None:
        source = SigmaRuleLocation(path, *one.start) if one is not None else SigmaRuleLocation(path)
    try:
        # References are resolved and filters applied across all files by the caller: a correlation or a filter
        # may name a rule elsewhere.
        collection = SigmaCollection.from_dicts([_pysigma_spelling(d.data) for d in usable], collect_errors=True,
                                                source=source, resolve_references=False, collect_filters=True)
    except SigmaError as e:  # some errors pySigma raises even when it collects them
        out.errors.append(_error(one, path, e))
        return
    out.errors.extend(_error(one, path, e) for e in collection.errors if not _belongs_to_rule(e, collection))
    for rule in collection:
        document = one or _document_of(usable, rule)
        rid = str(rule.id) if rule.id else None
        if rule.errors:
            out.errors.extend(_error(document, path, e, rid, rule.title) for e in rule.errors)
            continue
        start = document.start if document is not None else None
        try:
            if isinstance(rule, SigmaCorrelationRule):
                out.correlations.append(replace(_correlation(rule, path), position=start))
            elif isinstance(rule, SigmaRule):
                out.rules.append(LoadedRule(_info(rule, path), _tree(rule.detection.parsed_condition, placeholders),
                                            start))
            else:  # pragma: no cover - pySigma has no other rule kinds (filters are kept apart)
                raise UnsupportedFeature(f"{type(rule).__name__}")
        except (RuleContentError, SigmaError) as e:  # anything else raised while lowering is a bug: it surfaces
            out.errors.append(_error(document, path, e, rid, rule.title))
    for f in collection.filters:
        document = one or _document_of(usable, f)
        fid = str(f.id) if f.id else None
        if f.errors:
            out.errors.extend(_error(document, path, e, fid, f.title) for e in f.errors)
            continue
        try:
            out.filters.append(replace(_filter(f, path, placeholders),
                                       position=document.start if document is not None else None))
        except (RuleContentError, SigmaError) as e:
            out.errors.append(_error(document, path, e, fid, f.title))


def _error(document: Document | None, path: Path | None, error: Exception, rule_id: str | None = None,
           title: str | None = None) -> RuleLoadError:
    """The rule's error, at the key or value it names in the rule's document."""
    reason = _sigma_reason(error) if isinstance(error, SigmaError) else str(error)
    where = locate(document, error, reason) if document is not None else None
    source = error.source if isinstance(error, SigmaError) else None
    if source is not None and source.line is not None and (document is None or (
            source.line, source.char) != document.start):
        where = (source.line, source.char or 1)  # pySigma located it more closely than the document we gave it
    return RuleLoadError.at(where, path, _kind(error), reason, rule_id, title)


def _kind(error: Exception) -> ErrorKind:
    if isinstance(error, UnresolvedPlaceholder):
        return ErrorKind.PLACEHOLDER
    if isinstance(error, UnsupportedFeature):
        return ErrorKind.UNSUPPORTED
    return ErrorKind.PARSE  # pySigma's errors and InvalidRuleValue


def _document_of(documents: list[Document], rule: object) -> Document | None:
    """In a file parsed as one collection, the document a rule came from: by id, else by title."""
    for attr, key in (("id", "id"), ("title", "title")):
        value = getattr(rule, attr, None)
        if value:
            found = [d for d in documents if isinstance(d.data, dict) and str(d.data.get(key)) == str(value)]
            if len(found) == 1:
                return found[0]
    return None


def _shape_problem(document: Document) -> tuple[Position, str] | None:
    """A shape pySigma does not check and would fail on with a Python error: Vigil's own parse error instead."""
    data = document.data
    if not isinstance(data, dict):
        return document.start, f"a rule document must be a mapping of keys to values, not {_kind_of(data)}"
    for key in data:
        if not isinstance(key, str):
            return mention_position(document, str(key)), f"rule key {key!r} is not text"
    if "id" in data and not isinstance(data["id"], str):
        return key_position(document, "id"), f"id must be text, not {_kind_of(data['id'])}"
    for section in ("detection", "filter"):
        body = data.get(section)
        if not isinstance(body, dict):
            continue  # pySigma reports a missing or malformed section itself
        condition = body.get("condition")
        if condition is not None and not (isinstance(condition, str) or (
                isinstance(condition, list) and all(isinstance(c, str) for c in condition))):
            return (key_position(document, section, "condition"),
                    f"{section}.condition must be text or a list of texts, not {_kind_of(condition)}")
        bad = _non_text_key(body)
        if bad is not None:
            return mention_position(document, str(bad)), f"{section} key {bad!r} is not text (a field name is)"
    return None


def _non_text_key(value: object) -> object | None:
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                return k  # type: ignore[no-any-return]
            found = _non_text_key(v)
            if found is not None:
                return found
    elif isinstance(value, list):
        for item in value:
            found = _non_text_key(item)
            if found is not None:
                return found
    return None


def _kind_of(value: object) -> str:
    return {dict: "a mapping", list: "a list", str: "text", bool: "a boolean", int: "a number",
            float: "a number"}.get(type(value), type(value).__name__)


def _pysigma_spelling(data: Any) -> Any:
    """`data` with the modifier aliases of `_MODIFIER_ALIASES` in detection and filter keys spelled as pySigma
    knows them; the same object when it has none (the usual case)."""
    if not isinstance(data, dict):
        return data
    changed = {}
    for section in ("detection", "filter"):
        body = data.get(section)
        if isinstance(body, dict):
            spelled = _respelled(body)
            if spelled is not body:
                changed[section] = spelled
    return {**data, **changed} if changed else data


def _respelled(value: Any) -> Any:
    if isinstance(value, dict):
        items = [(_respelled_key(k), _respelled(v)) for k, v in value.items()]
        if all(k is k0 and v is v0 for (k, v), (k0, v0) in zip(items, value.items(), strict=True)):
            return value
        return dict(items)
    if isinstance(value, list):
        items = [_respelled(v) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value


def _respelled_key(key: Any) -> Any:
    if not isinstance(key, str) or "|" not in key:
        return key
    name, *modifiers = key.split("|")
    if not any(m in _MODIFIER_ALIASES for m in modifiers):
        return key
    return "|".join([name, *(_MODIFIER_ALIASES.get(m, m) for m in modifiers)])


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
