"""Benchmark the Sigma engine: SigmaHQ Windows rules over EVTX-ATTACK-SAMPLES, against raw EVTX parsing."""

from __future__ import annotations

import argparse
import collections
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import orjson
from evtx import PyEvtxParser

from vigil.detect import load_rules
from vigil.detect.triage import discover_inputs, triage

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    default = Path(os.environ.get("VIGIL_SHARED_DATA", REPO.parent / "shared" / "data"))
    parser.add_argument("--data", type=Path, default=default, help="the shared third-party data folder")
    parser.add_argument("--workers", type=int, default=0, help="processes for the triage run (0: all cores)")
    args = parser.parse_args()
    rules_dir = args.data / "sigma" / "rules" / "windows"
    evtx_dir = args.data / "evtx" / "EVTX-ATTACK-SAMPLES"
    if not rules_dir.is_dir() or not evtx_dir.is_dir():
        print(f"bench/detect.py: data not found under {args.data} (use --data)", file=sys.stderr)
        return 2

    t0 = time.perf_counter()
    report = load_rules([rules_dir])
    load_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as cache:  # warm start: the compiled-rule cache, filled then read
        load_rules([rules_dir], cache_dir=Path(cache))
        t0 = time.perf_counter()
        warm = load_rules([rules_dir], cache_dir=Path(cache))
        warm_s = time.perf_counter() - t0
        assert warm.cache == "hit", warm.cache
        del warm  # one rule set in memory from here on, as in `vigil triage`
    files = discover_inputs([evtx_dir])

    # Baseline: the raw evtx parse rate to Python dicts, one core, same files.
    t0 = time.perf_counter()
    events = []
    for f in files:
        for record in PyEvtxParser(str(f)).records_json():
            events.append(orjson.loads(record["data"]))
    parse_s = time.perf_counter() - t0
    baseline = len(events) / parse_s

    # Matching alone, one core: flatten + match every record (the same work as before the prefilter:
    # a pyevtx dict in, hits out). CPU time too, since wall time is noisy on a shared machine.
    ruleset = report.ruleset
    t0, c0 = time.perf_counter(), time.process_time()
    detections = 0
    fired: collections.Counter[str] = collections.Counter()
    for record in events:
        for hit in ruleset.match_evtx_record(record):
            detections += 1
            fired[hit.rule_id] += 1
    match_s, match_cpu = time.perf_counter() - t0, time.process_time() - c0

    # Steady state: the records replicated in memory to >= 100,000 events, matched on one core.
    copies = -(-100_000 // len(events))
    c0 = time.process_time()
    for _ in range(copies):
        for record in events:
            ruleset.match_evtx_record(record)
    steady_cpu = time.process_time() - c0
    steady = copies * len(events) / steady_cpu

    # End to end like `vigil triage`: read + parse + match, on all cores.
    t0 = time.perf_counter()
    results = triage(ruleset, files, workers=args.workers)
    triage_s = time.perf_counter() - t0
    triage_events = sum(r.events for r in results)

    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers = args.workers or os.cpu_count() or 1
    print(f"rules: {len(ruleset)} loaded, {len(report.errors)} failed, {len(report.notes)} without a source "
          f"(load+compile cold {load_s:.1f} s, warm from the rule cache {warm_s:.2f} s)")
    print(f"events: {len(events)} in {len(files)} files")
    print(f"baseline evtx parse to dicts, 1 core: {baseline:,.0f} events/s")
    print(f"match (flatten+match), 1 core: {len(events) / match_s:,.0f} events/s "
          f"({match_s:.2f} s; {len(events) / match_s / baseline:.3f}x baseline; "
          f"CPU {len(events) / match_cpu:,.0f} events/s)")
    print(f"match steady state, {copies * len(events):,} events, 1 core (CPU): {steady:,.0f} events/s; "
          f"match time / parse time {baseline / steady:.2f}")
    print(f"triage end to end (parse+match), {workers} workers: {triage_events / triage_s:,.0f} events/s "
          f"({triage_s:.2f} s)")
    print(f"detections: {detections}, rules fired: {len(fired)}")
    print(f"peak RSS: {rss_mib:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
