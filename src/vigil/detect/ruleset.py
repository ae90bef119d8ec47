"""A compiled rule set: index by event source, run the generated matchers, build hits."""

from __future__ import annotations

import marshal
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import CodeType
from typing import Any

from vigil.detect.cache import LazyRules
from vigil.detect.candidates import Bucket
from vigil.detect.codegen import run_module
from vigil.detect.correlation import Correlation
from vigil.detect.events import Scalar, evtx_views, views
from vigil.detect.mappings import ANY
from vigil.detect.model import RuleHit, RuleInfo
from vigil.detect.prefilter import merge_plans
from vigil.detect.runtime import derive_fields, evaluate

try:  # the C hot path, built at install; without it the generated Python functions run
    from vigil.detect import _speedups
except ImportError:  # pragma: no cover - exercised where no compiler built the extension
    _speedups = None  # type: ignore[assignment]


def native_matching() -> bool:
    """Whether the C hot path is built here; without it the same engine runs in Python, about three times as
    slow."""
    return _speedups is not None


TABLE_KEY = "_table"  # in JSON-lines input, names the telemetry table of a row

Scan = tuple[int, list[tuple[list[RuleHit], Mapping[str, Scalar]]], Exception | None]


@dataclass(frozen=True)
class CompiledRules:
    """Everything a spawned worker process needs to rebuild a RuleSet: rule metadata and the matchers'
    code objects, marshalled (the same interpreter reads them back)."""

    rules: tuple[RuleInfo, ...]
    code: bytes
    correlations: tuple[Correlation, ...] = ()


class RuleSet:
    """Rules compiled for matching; build with `load_rules`. The C or the Python matcher is chosen once, when
    the rule set is made (`native`: None takes C when it is built)."""

    def __init__(self, rules: Sequence[RuleInfo], code: tuple[CodeType, ...],
                 correlations: tuple[Correlation, ...] = (), *, native: bool | None = None) -> None:
        """`code`: the generated module's chunks (`codegen.generate_module`) compiled, for `rules`."""
        self.rules = rules
        self.correlations = correlations
        self._correlation_fields: dict[str, tuple[str, ...]] = {}
        for c in self.correlations:
            for r in c.rules:
                self._correlation_fields[r] = tuple(dict.fromkeys(self._correlation_fields.get(r, ())
                                                                  + c.fields_for(r)))
        self.code = code
        self.native = _speedups is not None and native is not False
        self._tables = tables = run_module(code)
        # Buckets (their automata) are built on first use: a run builds only those its events need.
        self._buckets: list[Bucket | None] = [None] * len(tables.buckets)
        self._win_cache: dict[tuple[Any, Any], tuple[Bucket, ...]] = {}
        self._tel_cache: dict[tuple[Any, Any], tuple[Bucket, ...]] = {}
        self._merged_buckets: dict[tuple[int, ...], Bucket] = {}
        self._hit_objects: dict[tuple[int, tuple[str, ...]], RuleHit] = {}
        self._index_of: dict[str, int] | None = None
        self._matcher: _Matcher = _NativeMatcher(self) if self.native else _PythonMatcher(self)

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
        return self._matcher.evtx_event(record)

    def scan_evtx(self, records: Iterable[Any], loads: Callable[[Any], Any]) -> Scan:
        """Match pyevtx `records_json()` records, each decoded by `loads`: (records read, (hits, flat event) of
        those some rule hits, the OSError, RuntimeError or ValueError that stopped reading or decoding, if any).
        Errors while matching are raised."""
        return self._matcher.scan(records, loads)

    def _match_evtx_general(self, record: Mapping[str, Any]) -> tuple[list[RuleHit], Mapping[str, Scalar]]:
        """The path for what the C matcher leaves: any record shape, and a (channel, event id) seen for the
        first time, whose buckets it then routes for the C matcher."""
        low, orig, multi = evtx_views(record, self.native)
        hits = self._match_windows_views(low, orig, multi)
        self._matcher.routed((low.get("Channel"), orig.get("EventID")))
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
            buckets = self._lookup(self._tables.windows, self._win_cache, key)
        return self._run(buckets, low, orig, multi)

    def match_telemetry(self, table: str, row: Mapping[str, Any]) -> list[RuleHit]:
        """Rules matching a Vigil telemetry row (Defender column names) of `table`."""
        low, orig, multi = views(row)
        key = (table, orig.get("ActionType"))
        buckets = self._tel_cache.get(key)
        if buckets is None:
            buckets = self._lookup(self._tables.telemetry, self._tel_cache, key)
        all_derived = self._tables.derived
        if all_derived:  # fields some source computes from a column (auditd's a0..aN from the command line)
            action = key[1] if isinstance(key[1], str) else ANY
            derived = all_derived.get((table.lower(), action)) or all_derived.get((table.lower(), ANY))
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
        for table, cache in ((self._tables.windows, self._win_cache), (self._tables.telemetry, self._tel_cache)):
            for source, sub in table:
                self._lookup(table, cache, (source, sub))
        self._rule_indexes()

    def _bucket(self, n: int) -> Bucket:
        bucket = self._buckets[n]
        if bucket is None:
            bucket = self._buckets[n] = Bucket(*self._tables.buckets[n], native=self.native)
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
            specs = self._tables.buckets
            members = tuple(sorted({i for n in numbers for i in specs[n][0]}))
            bucket = Bucket(members, merge_plans([specs[n][1] for n in numbers]), native=self.native)
            self._merged_buckets[numbers] = bucket  # as many as index keys with a source bucket, at most
        return bucket

    def _run(
        self, buckets: tuple[Bucket, ...], low: dict[str, Scalar], orig: dict[str, Scalar], multi: bool
    ) -> list[RuleHit]:
        if not buckets:
            return []
        ids = self._matcher.ids(buckets, low, orig, multi)
        return self._hits(ids, low, orig) if ids else []

    def _hits(self, ids: list[int], low: dict[str, Scalar], orig: dict[str, Scalar]) -> list[RuleHit]:
        """A hit per rule among the matching bindings `ids`, with the fields that made it match."""
        hits: list[RuleHit] = []
        seen: set[int] = set()
        rule_of = self._tables.rule_of
        for i in ids:
            rule_index = rule_of[i]
            if rule_index in seen:
                continue
            seen.add(rule_index)
            hits.append(self.hit(rule_index, tuple(sorted(self._matcher.trace(i, low, orig)))))
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



class _Matcher:
    """How a rule set runs its candidates' trees: in C or in Python, chosen once per rule set."""

    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules
        self.tables = rules._tables

    def ids(self, buckets: tuple[Bucket, ...], low: dict[str, Scalar], orig: dict[str, Scalar],
            multi: bool) -> list[int]:
        raise NotImplementedError

    def trace(self, i: int, low: dict[str, Scalar], orig: dict[str, Scalar]) -> set[str]:
        raise NotImplementedError

    def evtx_event(self, record: Mapping[str, Any]) -> tuple[list[RuleHit], Mapping[str, Scalar]]:
        return self.rules._match_evtx_general(record)

    def routed(self, key: tuple[Any, Any]) -> None:
        """The general path has routed (channel, event id) `key`."""

    def scan(self, records: Iterable[Any], loads: Callable[[Any], Any]) -> Scan:
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
            hits, flat = self.evtx_event(record)
            if hits:
                found.append((hits, flat))


class _PythonMatcher(_Matcher):
    """The generated functions, or the tree walker for list-valued fields: the fallback and the tests' oracle."""

    def ids(self, buckets: tuple[Bucket, ...], low: dict[str, Scalar], orig: dict[str, Scalar],
            multi: bool) -> list[int]:
        ids: list[int] = []
        if multi:  # list-valued fields: the tree walker tests each element
            atoms, trees = self.tables.atoms, self.tables.trees
            for bucket in buckets:
                ids.extend(i for i in bucket.candidates(low) if evaluate(trees[i], atoms, low, orig))
        else:
            functions = self.tables.functions
            for bucket in buckets:
                ids.extend(i for i in bucket.candidates(low) if functions[i](low, orig))
        return ids

    def trace(self, i: int, low: dict[str, Scalar], orig: dict[str, Scalar]) -> set[str]:
        trace: set[str] = set()
        evaluate(self.tables.trees[i], self.tables.atoms, low, orig, trace)
        return trace


class _NativeMatcher(_Matcher):
    """`_speedups`: candidates and their trees in C, and pyevtx records from views to evidence in one call."""

    def __init__(self, rules: RuleSet) -> None:
        super().__init__(rules)
        self._routes: dict[tuple[Any, Any], tuple[tuple[Any, ...], ...]] = {}  # the C path's _win_cache
        self._evtx: _speedups.EvtxMatcher | None = None  # made on first use

    def ids(self, buckets: tuple[Bucket, ...], low: dict[str, Scalar], orig: dict[str, Scalar],
            multi: bool) -> list[int]:
        run, t = _speedups.run, self.tables
        ids: list[int] = []
        for bucket in buckets:  # list-valued fields included
            ids.extend(run(low, orig, bucket.lookups, t.trees, t.specs, t.atoms))
        return ids

    def trace(self, i: int, low: dict[str, Scalar], orig: dict[str, Scalar]) -> set[str]:
        t = self.tables
        return _speedups.trace(t.trees[i], low, orig, t.specs, t.atoms) or set()

    def _matcher(self) -> _speedups.EvtxMatcher:
        if self._evtx is None:
            t = self.tables
            self._evtx = _speedups.EvtxMatcher(self._routes, t.trees, t.specs, t.atoms, t.rule_of,
                                               self.rules.hit, self.rules._match_evtx_general)
        return self._evtx

    def evtx_event(self, record: Mapping[str, Any]) -> tuple[list[RuleHit], Mapping[str, Scalar]]:
        return self._matcher()(record)  # views, routing, matching and evidence in one C call for usual shapes

    def scan(self, records: Iterable[Any], loads: Callable[[Any], Any]) -> Scan:
        return self._matcher().scan(records, loads)  # the whole loop in C: no Python frame per record

    def routed(self, key: tuple[Any, Any]) -> None:
        buckets = self.rules._win_cache.get(key)  # filled by the general path, unless full
        if (buckets is not None and len(self._routes) < 4096
                and all(k is None or k.__class__ is str for k in key)):
            self._routes[key] = tuple(b.lookups for b in buckets)
