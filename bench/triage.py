"""Benchmark `vigil triage`: all SigmaHQ Windows rules over EVTX-ATTACK-SAMPLES, against parsing alone.

Prints what issue 3 asks for: rules loaded/failed, rules fired, detections, rule load cold and warm, the
steady state over the records replicated to >= 100,000 events with the ratio of triage time to the
parse-only time of the same records (same library, same processes, same run), a whole warm `vigil triage`
run as a subprocess, and peak memory.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import orjson
from evtx import PyEvtxParser

from vigil.detect import RuleFilter, load_rules
from vigil.detect.triage import batches, discover_inputs, triage, with_correlations

REPO = Path(__file__).resolve().parent.parent
STEADY_EVENTS = 100_000
T = TypeVar("T")


def _parse_batch(paths: list[Path]) -> int:
    """Parse only, as triage reads: pyevtx records as JSON, decoded to dicts."""
    n = 0
    for p in paths:
        for record in PyEvtxParser(str(p)).records_json():
            orjson.loads(record["data"])  # type: ignore[index]
            n += 1
    return n


def parse_only(files: list[Path], workers: int) -> int:
    """The same files over the same number of processes and batches as `triage`, without matching."""
    if workers == 1:
        return _parse_batch(files)
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        return sum(pool.imap_unordered(_parse_batch, batches(files, workers * 4)))


def timed(fn: Callable[[], T]) -> tuple[T, float, float]:
    """(result, wall seconds, CPU seconds of this process and of its finished children)."""
    def cpu() -> float:
        s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime
    c0, t0 = cpu(), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0, cpu() - c0


class Run:
    """One `vigil triage` subprocess: wall seconds, CPU seconds (its workers included) and the peak RSS in
    MiB of its largest process."""

    def __init__(self, cmd: list[str]) -> None:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        self.wall = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"vigil triage failed: {cmd}")
        self.cpu = usage.ru_utime + usage.ru_stime
        self.rss = usage.ru_maxrss / 1024


def whole_runs(rules_dir: Path, evtx_dir: Path, cache: Path, runs: int) -> tuple[Run, list[Run]]:
    """A cold `vigil triage` run over the samples (it fills the rule cache), then warm runs.

    Run while this process is small: a child's peak RSS counts what it shared with its parent before exec.
    """
    cmd = [sys.executable, "-m", "vigil", "triage", str(evtx_dir), "--rules", str(rules_dir), "--cache", str(cache)]
    return Run(cmd), [Run(cmd) for _ in range(runs)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = Path(os.environ.get("VIGIL_SHARED_DATA", REPO.parent / "shared" / "data"))
    parser.add_argument("--data", type=Path, default=default, help="the shared third-party data folder")
    parser.add_argument("--workers", type=int, default=0, help="triage processes (0: one per core)")
    parser.add_argument("--runs", type=int, default=5, help="timed whole `vigil triage` runs")
    parser.add_argument("--rounds", type=int, default=5, help="steady-state rounds of triage and parse-only")
    args = parser.parse_args()
    rules_dir = args.data / "sigma" / "rules" / "windows"
    evtx_dir = args.data / "evtx" / "EVTX-ATTACK-SAMPLES"
    if not rules_dir.is_dir() or not evtx_dir.is_dir():
        print(f"bench/triage.py: data not found under {args.data} (use --data)", file=sys.stderr)
        return 2
    workers = args.workers or os.cpu_count() or 1
    no_filter = RuleFilter()  # what `vigil triage` passes without filter options: the same cache key

    with tempfile.TemporaryDirectory() as tmp:
        cold_run, warm_runs = whole_runs(rules_dir, evtx_dir, Path(tmp) / "cli", args.runs)
        cache = Path(tmp) / "bench"
        t0 = time.perf_counter()
        report = load_rules([rules_dir], rule_filter=no_filter, cache_dir=cache)  # cold: parse + compile
        cold_s = time.perf_counter() - t0
        assert report.cache == "stored", report.cache
        del report
        warm_times = []
        for _ in range(3):
            t0 = time.perf_counter()
            report = load_rules([rules_dir], rule_filter=no_filter, cache_dir=cache)
            warm_times.append(time.perf_counter() - t0)
            assert report.cache == "hit", report.cache
        ruleset = report.ruleset

        files = discover_inputs([evtx_dir])
        results = triage(ruleset, files, workers=workers)  # one pass: what fires
        events = sum(r.events for r in results)
        detections = with_correlations(ruleset, [d for r in results for d in r.detections])
        fired = {d.hit.rule_id for d in detections}

        # Steady state: the files listed over and over (their bytes stay in the page cache), read, parsed and
        # matched by triage's own code path; parse-only reads the same list with the same processes.
        copies = -(-STEADY_EVENTS // events)
        replicated = files * copies
        # Rounds of triage then parse-only, back to back: other work on the machine slows both alike within a
        # round. The fastest of each (the least disturbed) give the figures; the rounds' ratios show the spread.
        rounds = []
        for _ in range(args.rounds):
            steady, triage_s, triage_cpu = timed(lambda: triage(ruleset, replicated, workers=workers))
            steady_events = sum(r.events for r in steady)
            parsed, parse_s, parse_cpu = timed(lambda: parse_only(replicated, workers))
            assert parsed == steady_events, (parsed, steady_events)
            rounds.append((triage_s, triage_cpu, parse_s, parse_cpu))
        triage_s, triage_cpu = min(r[0] for r in rounds), min(r[1] for r in rounds)
        parse_s, parse_cpu = min(r[2] for r in rounds), min(r[3] for r in rounds)
        round_ratios = sorted(r[0] / r[2] for r in rounds)
        parsed1, _, parse1_cpu = timed(lambda: parse_only(files * 2, 1))
        bench_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"rules: {len(ruleset)} loaded, {len(report.errors)} failed, {len(report.notes)} without an event source "
          f"({report.files} files)")
    print(f"rule load: cold (parse + compile) {cold_s:.1f} s; warm (compiled-rule cache) "
          f"{min(warm_times):.2f} s (median {statistics.median(warm_times):.2f} s)")
    print(f"events: {events} in {len(files)} files; detections: {len(detections)}, rules fired: {len(fired)}")
    print(f"steady state, {steady_events:,} events, {workers} processes, fastest of {args.rounds} rounds: triage "
          f"{steady_events / triage_s:,.0f} "
          f"events/s ({triage_s:.2f} s wall, {steady_events / triage_cpu:,.0f} events per CPU-second)")
    print(f"parse only (evtx to dicts), same events and processes: {steady_events / parse_s:,.0f} events/s "
          f"({parse_s:.2f} s wall, {steady_events / parse_cpu:,.0f} events per CPU-second); "
          f"one process: {parsed1 / parse1_cpu:,.0f} events per CPU-second")
    print(f"ratio triage / parse-only time: {triage_s / parse_s:.2f} by wall time, "
          f"{triage_cpu / parse_cpu:.2f} by CPU time (fastest of {args.rounds} rounds each; per round by wall: "
          f"median {statistics.median(round_ratios):.2f}, {round_ratios[0]:.2f} to {round_ratios[-1]:.2f})")
    walls = sorted(r.wall for r in warm_runs)
    print(f"whole warm `vigil triage` over EVTX-ATTACK-SAMPLES ({args.runs} runs): best {walls[0]:.2f} s, "
          f"median {statistics.median(walls):.2f} s wall; CPU best {min(r.cpu for r in warm_runs):.2f} s "
          f"(cold, filling the rule cache: {cold_run.wall:.1f} s)")
    print(f"peak RSS: warm `vigil triage` run {max(r.rss for r in warm_runs):.0f} MiB (largest process); "
          f"cold run {cold_run.rss:.0f} MiB; this benchmark {bench_rss:.0f} MiB")
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())} (other work shares the cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
