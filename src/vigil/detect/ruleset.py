"""A compiled rule set: index by event source, run the generated matchers, build hits."""

from __future__ import annotations

import marshal
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import CodeType
from typing import TYPE_CHECKING, Any

from vigil.detect.binding import Specialized, specialize, why_unbound
from vigil.detect.cache import CacheEntry, LazyRules, RuleCache, cache_key, settings_text
from vigil.detect.candidates import Bucket
from vigil.detect.codegen import CompiledBinding, generate_module
from vigil.detect.correlation import Correlation
from vigil.detect.events import Scalar, evtx_views, views
from vigil.detect.mappings import ANY, EventSource, SourceMapping, default_mappings
from vigil.detect.model import (
    AbsentFields,
    ErrorKind,
    LoadReport,
    RuleFilter,
    RuleHit,
    RuleInfo,
    RuleLoadError,
    RuleNote,
)
from vigil.detect.prefilter import BucketPlan, merge_plans
from vigil.detect.runtime import NAMESPACE, derive_fields, evaluate
from vigil.detect.sources import read_sources

try:  # the C hot path, built at install; without it the generated Python functions run
    from vigil.detect import _speedups
except ImportError:  # pragma: no cover - exercised where no compiler built the extension
    _speedups = None  # type: ignore[assignment]

if TYPE_CHECKING:  # pySigma (through `loading`) is imported only to compile: a warm start never needs it
    from vigil.detect.loading import LoadedRule, PendingCorrelation
    from vigil.detect.placeholders import Placeholders

def native_matching() -> bool:
    """Whether the C hot path is built here; without it the same engine runs in Python, about three times as
    slow."""
    return _speedups is not None


# A generated binding test: (lower-cased event, original event) -> matched
Matcher = Callable[[Mapping[str, Scalar], Mapping[str, Scalar]], bool]

TABLE_KEY = "_table"  # in JSON-lines input, names the telemetry table of a row


@dataclass(frozen=True)
class CompiledRules:
    """Everything a spawned worker process needs to rebuild a RuleSet: rule metadata and the matchers'
    code objects, marshalled (the same interpreter reads them back)."""

    rules: tuple[RuleInfo, ...]
    code: bytes
    correlations: tuple[Correlation, ...] = ()


class RuleSet:
    """Rules compiled for matching; build with `load_rules` or `RuleSet.compile`."""

    def __init__(self, rules: Sequence[RuleInfo], code: tuple[CodeType, ...],
                 correlations: tuple[Correlation, ...] = ()) -> None:
        """`code`: the generated module's chunks (`codegen.generate_module`) compiled, for `rules`."""
        self.rules = rules
        self.correlations = correlations
        self._correlation_fields: dict[str, tuple[str, ...]] = {}
        for c in self.correlations:
            for r in c.rules:
                self._correlation_fields[r] = tuple(dict.fromkeys(self._correlation_fields.get(r, ())
                                                                  + c.fields_for(r)))
        self.code = code
        ns: dict[str, Any] = dict(NAMESPACE)
        for chunk in code:
            exec(chunk, ns)  # noqa: S102 - our own generated code
        self._atoms = ns["A"]
        self._atom_specs = ns["S"]
        self._trees = ns["T"]
        self._rule_of: list[int] = ns["R"]
        self._functions: list[Matcher] = ns["F"]
        # Buckets (their automata) are built on first use: a run builds only those its events need.
        self._specs: list[tuple[tuple[int, ...], BucketPlan]] = ns["B"]
        self._buckets: list[Bucket | None] = [None] * len(self._specs)
        self._win: dict[tuple[str, str], int] = ns["WIN"]
        self._tel: dict[tuple[str, str], int] = ns["TEL"]
        self._derived: dict[tuple[str, str], tuple[tuple[str, str, str], ...]] = ns["DER"]
        self._win_cache: dict[tuple[Any, Any], tuple[Bucket, ...]] = {}
        self._tel_cache: dict[tuple[Any, Any], tuple[Bucket, ...]] = {}
        self._win_routes: dict[tuple[Any, Any], tuple[tuple[Any, ...], ...]] = {}  # the C path's _win_cache
        self._evtx: _speedups.EvtxMatcher | None = None  # the C matcher of pyevtx records, made on first use
        self._merged_buckets: dict[tuple[int, ...], Bucket] = {}
        self._hit_objects: dict[tuple[int, tuple[str, ...]], RuleHit] = {}
        self._index_of: dict[str, int] | None = None

    @classmethod
    def compile(
        cls, rules: Sequence[LoadedRule], mappings: Sequence[SourceMapping] | None = None,
        correlations: Sequence[Correlation] = (),
    ) -> tuple[RuleSet, list[RuleNote], list[AbsentFields]]:
        mappings = default_mappings() if mappings is None else mappings
        bindings: list[CompiledBinding] = []
        notes: list[RuleNote] = []
        absent: list[AbsentFields] = []
        for index, rule in enumerate(rules):
            reasons: list[str] = []
            bound = False
            product = rule.info.logsource.product
            for mapping in mappings:
                sources, reason = mapping.sources(rule.info.logsource)
                unbound: list[tuple[EventSource, Specialized]] = []
                for source in sources:
                    special = specialize(rule.tree, source)
                    if special.absent:
                        absent.append(AbsentFields(rule.info.path, rule.info.id, source.name, special.absent,
                                                   special.bound))
                    if not special.bound:
                        unbound.append((source, special))
                        continue
                    bindings.extend(CompiledBinding(index, mapping.domain, key, special.tree, special.derived)
                                    for key in source.keys)
                    bound = True
                if unbound:
                    reasons.append(why_unbound(unbound))
                if reason and (not product or product.lower() == mapping.product):
                    reasons.append(reason)
            if not bound:
                why = "; ".join(reasons) or f"no mapping for product {rule.info.logsource.product!r}"
                notes.append(RuleNote(rule.info.path, rule.info.id, f"no event source: {why}"))
        # The source (megabytes for SigmaHQ's rules) is dropped once compiled; the cache keeps the code.
        code = tuple(compile(chunk, "<vigil-rules>", "exec") for chunk in generate_module(bindings))
        return cls(tuple(r.info for r in rules), code, tuple(correlations)), notes, absent

    @classmethod
    def from_compiled(cls, compiled: CompiledRules) -> RuleSet:
        return cls(compiled.rules, marshal.loads(compiled.code), compiled.correlations)  # noqa: S302 - ours

    def rule_index(self, rule_id: str) -> int:
        """The position of rule `rule_id` in `rules` (KeyError if it is not there)."""
        return self._rule_indexes()[rule_id]

    def _rule_indexes(self) -> dict[str, int]:
        if self._index_of is None:  # from the ids alone: a warm start does not make every rule's RuleInfo
            ids = self.rules.ids() if isinstance(self.rules, LazyRules) else [r.id for r in self.rules]
            self._index_of = {rule_id: i for i, rule_id in enumerate(ids)}
        return self._index_of

    def correlation_fields(self, rule_id: str) -> tuple[str, ...] | None:
        """Fields that correlations read from hits of `rule_id`; None when no correlation uses the rule."""
        return self._correlation_fields.get(rule_id)

    def export(self) -> CompiledRules:
        return CompiledRules(tuple(self.rules), marshal.dumps(self.code), self.correlations)

    def __len__(self) -> int:
        return len(self.rules)

    # -- matching -------------------------------------------------------------------------------

    def match_windows(self, event: Mapping[str, Any]) -> list[RuleHit]:
        """Rules matching a flattened Windows event (see `flatten_evtx`); Channel/EventID pick the rules."""
        return self._match_windows_views(*views(event))

    def match_evtx_record(self, record: Mapping[str, Any]) -> list[RuleHit]:
        """Rules matching a pyevtx JSON record (`{"Event": {"System": ..., "EventData": ...}}`)."""
        return self.match_evtx_event(record)[0]

    def match_evtx_event(self, record: Mapping[str, Any]) -> tuple[list[RuleHit], Mapping[str, Scalar]]:
        """`match_evtx_record`, and the record flattened to text values (lists as tuples, booleans as
        'true'/'false', as rules see them) to report the hits from without flattening it again."""
        if _speedups is not None:  # views, routing, matching and evidence in one C call for the usual shapes
            return self._evtx_matcher()(record)
        return self._match_evtx_general(record)

    def scan_evtx(
        self, records: Iterable[Any], loads: Callable[[Any], Any],
    ) -> tuple[int, list[tuple[list[RuleHit], Mapping[str, Scalar]]], Exception | None]:
        """Match pyevtx `records_json()` records, each decoded by `loads`: (records read, (hits, flat event) of
        those some rule hits, the OSError, RuntimeError or ValueError that stopped reading or decoding, if any).
        Errors while matching are raised."""
        if _speedups is not None:  # the whole loop in C: no Python frame per record
            return self._evtx_matcher().scan(records, loads)
        events = 0
        found: list[tuple[list[RuleHit], Mapping[str, Scalar]]] = []
        it = iter(records)
        while True:
            try:
                record = loads(next(it)["data"])
            except StopIteration:
                return events, found, None
            except (OSError, RuntimeError, ValueError) as e:
                return events, found, e
            events += 1
            hits, flat = self.match_evtx_event(record)
            if hits:
                found.append((hits, flat))

    def _evtx_matcher(self) -> _speedups.EvtxMatcher:
        if self._evtx is None:
            self._evtx = _speedups.EvtxMatcher(self._win_routes, self._trees, self._atom_specs, self._atoms,
                                               self._rule_of, self.hit, self._match_evtx_general)
        return self._evtx

    def _match_evtx_general(self, record: Mapping[str, Any]) -> tuple[list[RuleHit], Mapping[str, Scalar]]:
        """The path for what the C matcher leaves: any record shape, and a (channel, event id) seen for the
        first time, whose buckets it then routes for the C matcher."""
        low, orig, multi = evtx_views(record)
        hits = self._match_windows_views(low, orig, multi)
        key = (low.get("Channel"), orig.get("EventID"))
        buckets = self._win_cache.get(key)  # filled by the line above, unless full
        if (_speedups is not None and buckets is not None and len(self._win_routes) < 4096
                and all(k is None or k.__class__ is str for k in key)):
            self._win_routes[key] = tuple(b.lookups for b in buckets)
        return hits, orig

    def _match_windows_views(self, low: dict[str, Scalar], orig: dict[str, Scalar], multi: bool) -> list[RuleHit]:
        channel, event_id = low.get("Channel"), orig.get("EventID")
        # The same name in EventData or UserData makes a list whose first value is System's: the source.
        if channel.__class__ is tuple:
            channel = channel[0] if channel else None
        if event_id.__class__ is tuple:
            event_id = event_id[0] if event_id else None
        key = (channel, event_id)
        buckets = self._win_cache.get(key)
        if buckets is None:
            buckets = self._lookup(self._win, self._win_cache, key)
        return self._run(buckets, low, orig, multi)

    def match_telemetry(self, table: str, row: Mapping[str, Any]) -> list[RuleHit]:
        """Rules matching a Vigil telemetry row (Defender column names) of `table`."""
        low, orig, multi = views(row)
        key = (table, orig.get("ActionType"))
        buckets = self._tel_cache.get(key)
        if buckets is None:
            buckets = self._lookup(self._tel, self._tel_cache, key)
        if self._derived:  # fields some source computes from a column (auditd's a0..aN from the command line)
            action = key[1] if isinstance(key[1], str) else ANY
            derived = self._derived.get((table.lower(), action)) or self._derived.get((table.lower(), ANY))
            if derived:
                derive_fields(derived, low, orig)
        return self._run(buckets, low, orig, multi)

    def match_event(self, event: Mapping[str, Any]) -> list[RuleHit]:
        """Dispatch on shape: pyevtx record, telemetry row (with `_table`), or flattened Windows event."""
        if "Event" in event and isinstance(event["Event"], Mapping):
            return self.match_evtx_record(event)
        table = event.get(TABLE_KEY)
        if isinstance(table, str):
            return self.match_telemetry(table, {k: v for k, v in event.items() if k != TABLE_KEY})
        return self.match_windows(event)

    def build_indexes(self) -> None:
        """Build every bucket's lookups, and the rule index by id, now: e.g. before forking workers so that
        they share them."""
        for table, cache in ((self._win, self._win_cache), (self._tel, self._tel_cache)):
            for source, sub in table:
                self._lookup(table, cache, (source, sub))
        self._rule_indexes()

    def _bucket(self, n: int) -> Bucket:
        bucket = self._buckets[n]
        if bucket is None:
            bucket = self._buckets[n] = Bucket(*self._specs[n])
        return bucket

    def _lookup(
        self, table: Mapping[tuple[str, str], int], cache: dict[tuple[Any, Any], tuple[Bucket, ...]],
        key: tuple[Any, Any],
    ) -> tuple[Bucket, ...]:
        source = key[0].lower() if isinstance(key[0], str) else key[0]
        sub = key[1] if isinstance(key[1], str) else ANY
        found: list[int] = []
        for k in ((source, sub), (source, ANY), (ANY, ANY)):
            n = table.get(k)
            if n is not None and n not in found:
                found.append(n)
        result = (self._merged(tuple(found)),) if len(found) > 1 else tuple(self._bucket(n) for n in found)
        if len(cache) < 4096:  # bounded: keys come from event data
            cache[key] = result
        return result

    def _merged(self, numbers: tuple[int, ...]) -> Bucket:
        """The buckets `numbers` as one: an event's fields are then looked up and searched once."""
        bucket = self._merged_buckets.get(numbers)
        if bucket is None:
            members = tuple(sorted({i for n in numbers for i in self._specs[n][0]}))
            bucket = Bucket(members, merge_plans([self._specs[n][1] for n in numbers]))
            self._merged_buckets[numbers] = bucket  # as many as index keys with a source bucket, at most
        return bucket

    def _run(
        self, buckets: tuple[Bucket, ...], low: dict[str, Scalar], orig: dict[str, Scalar], multi: bool
    ) -> list[RuleHit]:
        if not buckets:
            return []
        ids: list[int] = []
        if _speedups is not None:  # candidates and their trees in C, list-valued fields included
            run, trees, specs, atoms = _speedups.run, self._trees, self._atom_specs, self._atoms
            for bucket in buckets:
                ids.extend(run(low, orig, bucket.lookups, trees, specs, atoms))
        elif multi:  # list-valued fields: the tree walker tests each element
            atoms, trees = self._atoms, self._trees
            for bucket in buckets:
                ids.extend(i for i in bucket.candidates(low) if evaluate(trees[i], atoms, low, orig))
        else:
            functions = self._functions
            for bucket in buckets:
                for i in bucket.candidates(low):
                    if functions[i](low, orig):
                        ids.append(i)
        return self._hits(ids, low, orig) if ids else []

    def _hits(self, ids: list[int], low: dict[str, Scalar], orig: dict[str, Scalar]) -> list[RuleHit]:
        """A hit per rule among the matching bindings `ids`, with the fields that made it match."""
        hits: list[RuleHit] = []
        seen: set[int] = set()
        for i in ids:
            rule_index = self._rule_of[i]
            if rule_index in seen:
                continue
            seen.add(rule_index)
            if _speedups is not None:
                trace = _speedups.trace(self._trees[i], low, orig, self._atom_specs, self._atoms) or set()
            else:
                trace = set()
                evaluate(self._trees[i], self._atoms, low, orig, trace)
            hits.append(self.hit(rule_index, tuple(sorted(trace))))
        return hits

    def hit(self, rule_index: int, matched_fields: tuple[str, ...]) -> RuleHit:
        """The hit of rule `rule_index` with this evidence. Hits are immutable: one object per rule and
        evidence, shared by every event that makes it."""
        key = (rule_index, matched_fields)
        hit = self._hit_objects.get(key)
        if hit is None:
            hit = RuleHit.of(self.rules[rule_index], matched_fields)
            if len(self._hit_objects) < 65536:  # bounded: evidence comes from event data
                self._hit_objects[key] = hit
        return hit


def load_rules(
    paths: Iterable[Path],
    *,
    rule_filter: RuleFilter | None = None,
    mappings: Sequence[SourceMapping] | None = None,
    cache_dir: Path | None = None,
    placeholders: Placeholders | None = None,
) -> LoadReport:
    """Load every rule under `paths`; broken rules are reported in the report, the rest compile. Sigma filters
    among them apply to the rules they name in any file; `placeholders` gives `|expand` values.

    With `cache_dir`, the compiled result is kept there under a hash of the rule files' paths and bytes,
    the mappings, the filter, the placeholders and the engine's own code: an unchanged rule set loads without
    parsing.
    """
    sources, read_errors = read_sources(paths)
    store = RuleCache(cache_dir) if cache_dir is not None else None
    # The shipped mappings are files of this package, which the engine fingerprint already hashes: a warm
    # start does not parse them.
    settings = settings_text(rule_filter, *(mappings if mappings is not None else ("shipped mappings",)),
                             *((dict(placeholders),) if placeholders else ()))
    key = cache_key(sources, settings) if store is not None else ""
    if store is not None and read_errors == []:  # read errors depend on the file system: never cached
        entry = store.get(key)
        if entry is not None:
            ruleset = RuleSet(entry.rules, entry.code, entry.correlations)
            return LoadReport(ruleset=ruleset, errors=entry.errors, notes=entry.notes, absent=entry.absent,
                              files=entry.files, cache="hit")
    from vigil.detect.filtering import LoadedFilter, apply_filters
    from vigil.detect.loading import load_source

    mappings = default_mappings() if mappings is None else mappings
    rules: list[LoadedRule] = []
    pending: list[PendingCorrelation] = []
    errors: list[RuleLoadError] = list(read_errors)
    seen: dict[str, Path | None] = {}
    filters: list[LoadedFilter] = []
    for source in sources:
        loaded = load_source(source, placeholders)
        errors.extend(loaded.errors)
        filters.extend(loaded.filters)
        pending.extend(c for c in loaded.correlations if rule_filter is None or rule_filter.keeps(c.info))
        for rule in loaded.rules:
            if rule.info.id in seen:
                errors.append(RuleLoadError(source.path, ErrorKind.DUPLICATE,
                                            f"rule id already loaded from {seen[rule.info.id]}",
                                            rule.info.id, rule.info.title))
                continue
            seen[rule.info.id] = source.path
            rules.append(rule)
    # Filters name rules that the rule filter may leave out: they are resolved against every loaded rule.
    rules = [r for r in apply_filters(rules, filters, errors) if rule_filter is None or rule_filter.keeps(r.info)]
    correlations = _resolve(pending, rules, errors)
    ruleset, notes, absent = RuleSet.compile(rules, mappings, correlations)
    report = LoadReport(ruleset=ruleset, errors=tuple(errors), notes=tuple(notes), absent=tuple(absent),
                        files=len(sources))
    if store is not None and not read_errors:
        try:
            store.put(key, CacheEntry(ruleset.rules, ruleset.code, report.errors,
                                      report.notes, report.files, ruleset.correlations, report.absent))
        except OSError as e:  # a read-only or full cache directory costs speed, never the load
            return replace(report, cache=f"not written to {cache_dir}: {e}")
        return replace(report, cache="stored")
    return report


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
            errors.append(RuleLoadError(p.info.path, ErrorKind.PARSE,
                                        f"correlation references unknown rule {e.args[0]!r} (not loaded, or "
                                        "itself a correlation: chained correlations are not supported)",
                                        p.info.id, p.info.title))
    return tuple(out)


def load_rules_text(
    text: str,
    path: Path | None = None,
    *,
    mappings: Sequence[SourceMapping] | None = None,
    placeholders: Placeholders | None = None,
) -> LoadReport:
    """Load rules from YAML text (one or more documents), e.g. rules kept in a database."""
    from vigil.detect.filtering import apply_filters
    from vigil.detect.loading import load_text

    loaded = load_text(text, path, placeholders)
    errors = list(loaded.errors)
    rules = apply_filters(loaded.rules, loaded.filters, errors)
    correlations = _resolve(loaded.correlations, rules, errors)
    ruleset, notes, absent = RuleSet.compile(rules, mappings, correlations)
    return LoadReport(ruleset=ruleset, errors=tuple(errors), notes=tuple(notes), absent=tuple(absent), files=1)
