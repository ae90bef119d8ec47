"""`vigil triage`: hunt through EVTX and JSON-lines files with Sigma rules, like Chainsaw or Hayabusa."""

from __future__ import annotations

import json
import os
import re
import sys
from collections import Counter
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vigil.core.severity import RuleLevel
from vigil.detect import RuleFilter, load_rules, native_matching
from vigil.detect.cache import default_cache_dir
from vigil.detect.placeholders import PlaceholderFileError, load_placeholders
from vigil.detect.triage import (
    Detection,
    FileResult,
    TriageInputError,
    discover_inputs,
    triage,
    with_correlations,
)

if TYPE_CHECKING:
    from rich.console import Console

_MARKUP = re.compile(r"\[/?(?:bold|red|yellow)?\]")


class _Stderr:
    """Messages on stderr: through rich (colours, a progress bar) on a terminal, plain text otherwise,
    which also spares a scripted run rich's import."""

    def __init__(self) -> None:
        self.console: Console | None = None
        if sys.stderr.isatty():
            from rich.console import Console

            self.console = Console(stderr=True, soft_wrap=True)

    def print(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text)
        else:
            sys.stderr.write(_MARKUP.sub("", text) + "\n")


class OutputFormat(StrEnum):
    TABLE = "table"
    JSONL = "jsonl"
    CSV = "csv"


def _record(d: Detection) -> dict[str, object]:
    return {
        "timestamp": d.timestamp, "host": d.host, "rule_id": d.hit.rule_id, "rule": d.hit.title,
        "level": str(d.hit.level), "severity": str(d.hit.severity), "status": d.hit.status,
        "tactics": [str(t) for t in d.hit.tactics], "techniques": list(d.hit.techniques),
        "source": d.source, "event_id": d.event_id, "fields": dict(d.fields), "file": str(d.path),
    }


def cache_dir(option: Path | None, disabled: bool) -> Path | None:
    """The compiled-rule cache folder the CLI uses: `--cache`, else the user's cache, none with `--no-cache`."""
    if disabled:
        return None
    return option or default_cache_dir(os.environ.get("XDG_CACHE_HOME"), Path.home())


def placeholder_values(path: Path | None) -> dict[str, tuple[str, ...]] | None:
    """The values of `--placeholders FILE`, or None without one; a bad file ends the command (exit 2)."""
    if path is None:
        return None
    try:
        return load_placeholders(path)
    except PlaceholderFileError as e:
        sys.stderr.write(f"vigil: error: placeholders: {e}\n")
        raise typer.Exit(2) from None


PLACEHOLDERS_HELP = "YAML or TOML file of |expand placeholder values: name -> value or list of values."


def app(
    paths: Annotated[list[Path], typer.Argument(help="EVTX or JSON-lines files and folders to hunt through.")],
    rules: Annotated[list[Path], typer.Option("--rules", "-r", help="Sigma rule files or folders.")],
    output: Annotated[OutputFormat, typer.Option("--output", "-o", help="Result format.")] = OutputFormat.TABLE,
    min_level: Annotated[RuleLevel | None, typer.Option("--min-level", help="Skip rules below this level.")] = None,
    status: Annotated[list[str] | None, typer.Option("--status", help="Only rules with this status.")] = None,
    tags: Annotated[list[str] | None, typer.Option("--tags", help="Only rules with one of these tags.")] = None,
    workers: Annotated[int, typer.Option("--workers", "-j",
                                         help="Processes (0: one per core, one for small inputs).")] = 0,
    cache: Annotated[Path | None, typer.Option("--cache", help="Compiled-rule cache folder "
                                                "(default: ~/.cache/vigil/rules).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Compile the rules without the cache.")] = False,
    placeholders: Annotated[Path | None, typer.Option("--placeholders", help=PLACEHOLDERS_HELP)] = None,
    strict: Annotated[bool, typer.Option("--strict", help="A damaged EVTX file is an error (exit 1), "
                                         "though its intact records are still hunted through.")] = False,
) -> None:
    """Run Sigma rules over event log files and print what fired."""
    err = _Stderr()
    rule_filter = RuleFilter(min_level, frozenset(s.lower() for s in status or ()),
                             frozenset(t.lower() for t in tags or ()))
    report = load_rules(rules, rule_filter=rule_filter, cache_dir=cache_dir(cache, no_cache),
                        placeholders=placeholder_values(placeholders))
    for e in report.errors:
        err.print(f"[yellow]rule skipped[/]: {e}")
    if report.cache not in ("", "hit", "stored"):
        err.print(f"[yellow]rule cache[/]: {report.cache}")
    if not native_matching():
        err.print("[yellow]slow path[/]: vigil.detect._speedups is not built (no C compiler when Vigil was "
                  "installed?): matching runs in Python, about three times as slow")
    if not len(report.ruleset):
        err.print("vigil: error: no rules to run (check --rules and the filters)")
        raise typer.Exit(2)
    try:
        files = discover_inputs(paths)
    except TriageInputError as e:
        err.print(f"vigil: error: {e}")
        raise typer.Exit(2) from None
    if not files:
        err.print("vigil: error: no .evtx or .jsonl files found")
        raise typer.Exit(2)

    if err.console is not None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("[bold]hunting"), BarColumn(), MofNCompleteColumn(), TextColumn("files"),
                      TimeElapsedColumn(), console=err.console, transient=True) as progress:
            task = progress.add_task("files", total=len(files))
            results = triage(report.ruleset, files, workers=workers, on_file=lambda _: progress.advance(task))
    else:
        results = triage(report.ruleset, files, workers=workers)
    results.sort(key=lambda r: str(r.path))
    failed = [r for r in results if r.error]
    damaged = [r for r in results if r.damage is not None and not r.error]
    for r in failed:
        err.print(f"[red]unreadable[/]: {r.path}: {r.error}")
    for r in damaged:
        err.print(f"[yellow]damaged[/]: {r.path}: {_damage_text(r)}")
    if output is OutputFormat.JSONL:
        for r in [*failed, *damaged]:
            sys.stdout.write(json.dumps(_problem_record(r)) + "\n")
    detections = with_correlations(report.ruleset, [d for r in results for d in r.detections])
    detections.sort(key=lambda d: (d.timestamp, d.hit.title))
    _print(detections, output)
    _summary(err, report_rules=len(report.ruleset), results=results, detections=detections)
    if damaged:
        err.print(f"{len(damaged)} damaged files: {sum(r.damage.records_read for r in damaged if r.damage)} records "
                  f"recovered, {sum(r.damage.records_skipped for r in damaged if r.damage)} skipped, "
                  f"{sum(r.damage.bytes_unreadable for r in damaged if r.damage)} bytes unreadable"
                  + (" (--strict: exit status 1)" if strict else ""))
    if failed or (strict and damaged):
        raise typer.Exit(1)


def _damage_text(r: FileResult) -> str:
    d = r.damage
    assert d is not None
    return (f"{d.records_read} records read, {d.records_skipped} skipped, {d.bytes_unreadable} bytes unreadable; "
            f"first error: {d.first_error}")


def _problem_record(r: FileResult) -> dict[str, object]:
    """A JSON-lines record of its own for a damaged or unreadable file (`type` tells it from a detection)."""
    out: dict[str, object] = {"type": "error" if r.error else "warning", "file": str(r.path),
                              "message": r.error or "damaged EVTX file: intact records recovered"}
    if r.damage is not None:
        out.update(records_read=r.damage.records_read, records_skipped=r.damage.records_skipped,
                   bytes_unreadable=r.damage.bytes_unreadable, first_error=r.damage.first_error)
    return out


def _print(detections: list[Detection], output: OutputFormat) -> None:
    if output is OutputFormat.JSONL:
        for d in detections:
            sys.stdout.write(json.dumps(_record(d)) + "\n")
    elif output is OutputFormat.CSV:
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow(["timestamp", "host", "level", "rule", "rule_id", "tactics", "source", "event_id",
                         "fields", "file"])
        for d in detections:
            writer.writerow([d.timestamp, d.host, d.hit.level, d.hit.title, d.hit.rule_id,
                             ";".join(d.hit.tactics), d.source, d.event_id,
                             "; ".join(f"{k}={v}" for k, v in d.fields), d.path])
    else:
        sys.stdout.write(_table(detections))


_HEADERS = ("time", "level", "rule", "host", "event", "key fields")
_WIDEST = (32, 13, 70, 30, 50)  # the key fields column takes what is left of each line


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"


def _table(detections: list[Detection]) -> str:
    """Plain aligned columns, one detection per line (a rich table takes seconds for a thousand rows)."""
    rows = [(d.timestamp, str(d.hit.level), d.hit.title, d.host, f"{d.source} {d.event_id}",
             "; ".join(f"{k}: {v}" for k, v in d.fields)) for d in detections]
    clipped = [(*tuple(_clip(c, w) for c, w in zip(r, _WIDEST, strict=False)), _clip(r[5], 200)) for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in clipped]) for i, h in enumerate(_HEADERS[:-1])]
    lines = []
    for r in [_HEADERS, (*tuple("-" * w for w in widths), "-" * 10), *clipped]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _summary(err: _Stderr, *, report_rules: int, results: list[FileResult], detections: list[Detection]) -> None:
    events = sum(r.events for r in results)
    fired = {d.hit.rule_id for d in detections}
    err.print(f"{len(results)} files, {events} events, {report_rules} rules, "
              f"{len(detections)} detections from {len(fired)} rules")
    by_level = Counter(str(d.hit.level) for d in detections)
    levels = ", ".join(f"{lvl}: {by_level[lvl]}" for lvl in reversed(RuleLevel) if by_level[lvl])
    if levels:
        err.print(f"by level: {levels}")
    by_tactic = Counter(t for d in detections for t in d.hit.tactics)
    if by_tactic:
        err.print("by tactic: " + ", ".join(f"{t}: {n}" for t, n in by_tactic.most_common()))
