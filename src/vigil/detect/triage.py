"""Offline hunting: read EVTX and JSON-lines files, run a rule set over them on several cores."""

from __future__ import annotations

import gc
import multiprocessing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import orjson
from evtx import PyEvtxParser

from vigil.detect.correlation import CorrelationEngine, parse_time
from vigil.detect.events import flatten_evtx
from vigil.detect.evtx_recovery import EvtxDamage, Recovery, check_evtx
from vigil.detect.model import RuleHit
from vigil.detect.ruleset import TABLE_KEY, CompiledRules, RuleSet

INPUT_SUFFIXES = (".evtx", ".jsonl", ".ndjson")
# Below this many input bytes one process is faster than starting workers (each would build the lookups
# its events need and warm up on its own): EVTX-ATTACK-SAMPLES (277 files, 25 MiB) is under it.
ONE_PROCESS_BYTES = 32 << 20  # searched in folders; a .json file named explicitly is read too


class TriageInputError(Exception):
    """An input file that cannot be read; names the file and the reason."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class Detection(NamedTuple):
    """A rule hit on one event of one input file, with the event's key fields. A named tuple: a run makes one
    per hit in the parent process from the workers' rows, and a frozen dataclass cost ~2 us each."""

    hit: RuleHit
    path: Path
    timestamp: str
    host: str
    source: str  # Windows channel or telemetry table
    event_id: str  # Windows EventID or telemetry ActionType
    fields: tuple[tuple[str, str], ...]  # the matched fields and their values
    context: tuple[tuple[str, str | None], ...] = ()  # fields that correlation rules group or count by


@dataclass(frozen=True)
class FileResult:
    path: Path
    events: int
    detections: tuple[Detection, ...]
    error: str | None = None
    damage: EvtxDamage | None = None  # a damaged EVTX file read on the recovery path: what it cost


def discover_inputs(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in INPUT_SUFFIXES and p.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            raise TriageInputError(path, "no such file or directory")
    return files


def read_evtx_records(path: Path) -> Iterator[dict[str, Any]]:
    """The pyevtx JSON records of an intact EVTX file, as dicts; a damaged one raises (`triage` recovers what
    it can of such a file instead)."""
    try:
        problem = check_evtx(path)
        if problem is not None:
            raise TriageInputError(path, f"damaged EVTX: {problem}")
        parser = PyEvtxParser(str(path), validate_checksums=True)
        for record in parser.records_json():
            yield orjson.loads(record["data"])  # type: ignore[index]
    except (OSError, RuntimeError, ValueError) as e:  # pyevtx raises RuntimeError on corrupt chunks
        raise TriageInputError(path, f"cannot read EVTX: {e}") from e


def read_events(path: Path) -> Iterator[dict[str, Any]]:
    """Flat events of a file: EVTX records flattened, JSON lines passed through."""
    if path.suffix.lower() == ".evtx":
        for record in read_evtx_records(path):
            yield flatten_evtx(record)
        return
    try:
        with path.open("rb") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError as e:
                    raise TriageInputError(path, f"line {number}: invalid JSON: {e}") from e
                if not isinstance(obj, dict):
                    raise TriageInputError(path, f"line {number}: expected a JSON object")
                yield flatten_evtx(obj) if isinstance(obj.get("Event"), dict) else obj
    except OSError as e:
        raise TriageInputError(path, str(e)) from e


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return "\n".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


def _shown(value: Any) -> str:
    return str(list(value)) if value.__class__ is tuple else str(value)


def with_correlations(ruleset: RuleSet, detections: Sequence[Detection]) -> list[Detection]:
    """Detections plus the correlation rules they set off, in time order across all files.

    Hits of rules that a correlation uses with `generate: false` (Sigma's default) are left out: they
    exist to feed the correlation. Events without a readable time cannot take part in a correlation.
    """
    if not ruleset.correlations:
        return list(detections)
    feeding_only = {r for c in ruleset.correlations if not c.generate for r in c.rules}
    engine = CorrelationEngine(ruleset.correlations)
    timed = sorted(((parse_time(d.timestamp), i, d) for i, d in enumerate(detections)
                    if engine.wants(d.hit.rule_id)), key=lambda t: (t[0] is None, t[0] or _EPOCH, t[1]))
    out = [d for d in detections if d.hit.rule_id not in feeding_only]
    for at, _, d in timed:
        if at is None:
            continue
        for ch in engine.observe(d.hit.rule_id, dict(d.context), at):
            group = tuple((k, v or "") for k, v in ch.group)
            out.append(Detection(
                hit=RuleHit.of(ch.correlation.info, tuple(k for k, _ in group)), path=d.path,
                timestamp=d.timestamp, host=d.host, source="correlation", event_id=str(ch.correlation.kind),
                fields=(*group, ("events", str(ch.events)), ("first", ch.first.isoformat()))))
    return out


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _describe(event: Mapping[str, Any]) -> tuple[str, str, str, str]:
    if TABLE_KEY in event:
        return (str(event.get("Timestamp", "")), str(event.get("DeviceName", "")),
                str(event[TABLE_KEY]), str(event.get("ActionType", "")))
    return (str(event.get("TimeCreated_SystemTime", event.get("TimeCreated", ""))),
            str(event.get("Computer", "")), str(event.get("Channel", "")), str(event.get("EventID", "")))


def scan_file(ruleset: RuleSet, path: Path) -> FileResult:
    return _unpack(path, _scan_packed(ruleset, path), ruleset)


def _scan_packed(ruleset: RuleSet, path: Path) -> Packed:
    """A file's result as workers send it (see Packed)."""
    events = 0
    rows: list[tuple[Any, ...]] = []
    try:
        if path.suffix.lower() == ".evtx":
            return _scan_evtx(ruleset, path)
        for event in read_events(path):
            events += 1
            hits = ruleset.match_event(event)
            if hits:
                _add_rows(rows, ruleset, hits, event)
    except TriageInputError as e:
        return events, e.reason, rows, None
    return events, None, rows, None


def _scan_evtx(ruleset: RuleSet, path: Path) -> Packed:
    """An intact file (headers checked, then parsed with the chunks' checksums validated) on the fast path; a
    damaged one, or one whose parse fails, from the start again on the recovery path."""
    rows: list[tuple[Any, ...]] = []
    try:
        problem = check_evtx(path)
        if problem is None:
            records = PyEvtxParser(str(path), validate_checksums=True).records_json()
            events, found, error = ruleset.scan_evtx(records, orjson.loads)  # flattens and matches in one pass
            if error is None:
                for hits, flat in found:
                    _add_rows(rows, ruleset, hits, flat)
                return events, None, rows, None
            problem = str(error)  # pyevtx raises RuntimeError on a corrupt chunk: the hits so far are read again
        recovery = Recovery(path.read_bytes(), problem)
    except (OSError, RuntimeError, ValueError) as e:
        return 0, f"cannot read EVTX: {e}", rows, None
    events, found, error = ruleset.scan_evtx(recovery.records(), orjson.loads)
    if error is not None:
        recovery.problems.append(str(error))
    for hits, flat in found:
        _add_rows(rows, ruleset, hits, flat)
    damage = recovery.damage()
    if not events:
        return 0, f"cannot read EVTX: {damage.first_error} (no intact record)", rows, damage
    return events, None, rows, damage


def _add_rows(rows: list[tuple[Any, ...]], ruleset: RuleSet, hits: list[RuleHit], event: Mapping[str, Any]) -> None:
    """A row per hit: (rule index, matched fields, timestamp, host, source, event id, fields, context)."""
    ts, host, source, event_id = _describe(event)
    get, index, correlated = event.get, ruleset.rule_index, ruleset.correlation_fields
    for hit in hits:
        fields = tuple([(f, _shown(get(f, ""))) for f in hit.matched_fields])
        wanted = correlated(hit.rule_id)
        context = tuple([(f, _text(get(f))) for f in wanted]) if wanted else ()
        rows.append((index(hit.rule_id), hit.matched_fields, ts, host, source, event_id, fields, context))


_worker_ruleset: RuleSet | None = None


def _init_worker(compiled: CompiledRules | None) -> None:
    global _worker_ruleset  # one rule set per worker process
    gc.enable()  # forked while the parent's collector was off; each batch turns it off again (_acyclic)
    if compiled is not None:
        _worker_ruleset = RuleSet.from_compiled(compiled)


# A FileResult as workers send it, without its path (the parent has it, and a Path costs more to unpickle than
# the rest of a result): (events, error, detections as rows of _add_rows, damage). Each hit would otherwise carry
# its rule's description, tags and references through pickle: several times the cost of the rest of the result.
Packed = tuple[int, str | None, list[tuple[Any, ...]], EvtxDamage | None]


def _unpack(path: Path, packed: Packed, ruleset: RuleSet) -> FileResult:
    events, error, rows, damage = packed
    hit, new = ruleset.hit, tuple.__new__  # tuple.__new__: a named tuple's own __new__ is a Python call
    detections = [new(Detection, (hit(index, matched), path, *rest)) for index, matched, *rest in rows]
    return FileResult(path, events, tuple(detections), error, damage)


def _scan_batch(task: tuple[int, list[Path]]) -> tuple[int, list[Packed]]:
    """(batch number, its files) -> (the number, each file's result in order)."""
    assert _worker_ruleset is not None, "worker not initialised"
    number, paths = task
    with _acyclic():
        return number, [_scan_packed(_worker_ruleset, p) for p in paths]


@contextmanager
def _acyclic() -> Iterator[None]:
    """No cyclic garbage collection while scanning: each event's dicts and strings hold no cycles and go with
    their last reference, yet their allocations would set off a collector pass every few hundred events."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def batches(files: Sequence[Path], count: int) -> list[list[Path]]:
    """`count` batches of about equal bytes (biggest files first, each to the lightest batch), biggest
    batch first: a worker takes one batch per task, so hundreds of small files cost a few round trips."""
    bins: list[tuple[int, int, list[Path]]] = [(0, i, []) for i in range(count)]
    for negative_size, _, f in sorted((-f.stat().st_size, n, f) for n, f in enumerate(files)):  # one stat each
        size, i, members = min(bins)
        members.append(f)
        bins[i] = (size - negative_size, i, members)
    return [m for _, _, m in sorted(bins, reverse=True) if m]


def triage(
    ruleset: RuleSet,
    files: list[Path],
    *,
    workers: int = 0,
    on_file: Callable[[FileResult], None] | None = None,
) -> list[FileResult]:
    """Scan files with the rule set; `workers` processes (0: one per core unless the input is small,
    1: in this process).

    Workers start once and take batches of files (a few per worker, for an even finish), not one file
    per task.
    """
    if not workers:
        small = sum(f.stat().st_size for f in files) < ONE_PROCESS_BYTES
        workers = 1 if small else multiprocessing.cpu_count()
    workers = min(workers, len(files)) or 1
    results: list[FileResult] = []
    if workers == 1:
        for f in files:
            with _acyclic():
                result = scan_file(ruleset, f)
            results.append(result)
            if on_file:
                on_file(result)
        return results
    global _worker_ruleset
    ctx: multiprocessing.context.BaseContext
    initargs: tuple[CompiledRules | None]
    if "fork" in multiprocessing.get_all_start_methods():
        # Forked workers inherit the compiled rule set with its lookups built: no second load or build.
        ctx = multiprocessing.get_context("fork")
        _worker_ruleset, initargs = ruleset, (None,)
        ruleset.build_indexes()
    else:
        ctx, initargs = multiprocessing.get_context("spawn"), (ruleset.export(),)
    # The collector stays off while the workers run, and what exists is frozen (the rule set above all), out of
    # its sight: in the workers, so that its passes do not copy the pages they inherit. At the end the results
    # (a few tuples per detection, none in a cycle) are frozen too before all goes back to the oldest
    # generation: the pass that their number would set off at once, walking every one, does not happen.
    was_enabled = gc.isenabled()
    gc.disable()
    gc.freeze()
    try:
        with ctx.Pool(workers, initializer=_init_worker, initargs=initargs) as pool:
            work = batches(files, workers * 4)
            for number, packed_results in pool.imap_unordered(_scan_batch, enumerate(work)):
                for path, packed in zip(work[number], packed_results, strict=True):
                    result = _unpack(path, packed, ruleset)
                    results.append(result)
                    if on_file:
                        on_file(result)
    finally:
        gc.freeze()
        gc.unfreeze()
        if was_enabled:
            gc.enable()
    order = {f: i for i, f in enumerate(files)}
    results.sort(key=lambda r: order[r.path])
    return results
