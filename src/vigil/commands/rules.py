"""`vigil rules check|test`: validate Sigma rules and run their golden tests."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from vigil.commands.triage import PLACEHOLDERS_HELP, cache_dir, placeholder_values
from vigil.detect import load_rules
from vigil.detect.testing import GoldenFileError, golden_files, run_golden

app = typer.Typer(help="Check Sigma rules and run their tests.", no_args_is_help=True)


def builtin_rules_dir() -> Path:
    """Vigil's own rule pack, shipped as package data."""
    return Path(str(resources.files("vigil.content") / "rules"))


@app.command()
def check(
    paths: Annotated[list[Path], typer.Argument(help="Sigma rule files or folders.")],
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List rules without an event source, and per "
                                          "rule and source the fields absent there.")] = False,
    cache: Annotated[Path | None, typer.Option("--cache", help="Compiled-rule cache folder.")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Compile without the cache.")] = False,
    placeholders: Annotated[Path | None, typer.Option("--placeholders", help=PLACEHOLDERS_HELP)] = None,
) -> None:
    """Load rules and report every one that fails (exit code 1 if any does)."""
    out = Console(highlight=False, soft_wrap=True)
    report = load_rules(paths, cache_dir=cache_dir(cache, no_cache), placeholders=placeholder_values(placeholders))
    for e in report.errors:
        out.print(f"[red]FAIL[/] {escape(str(e))}")
    if verbose:
        for n in report.notes:
            out.print(f"[yellow]NOTE[/] {escape(str(n))}")
        for a in report.absent:
            out.print(f"ABSENT {escape(str(a))}")
    out.print(f"{report.files} files, {len(report.ruleset)} rules loaded, {len(report.errors)} failed, "
              f"{len(report.notes)} without an event source")
    if report.errors:
        raise typer.Exit(1)


@app.command("test")
def test_rules(
    paths: Annotated[list[Path] | None, typer.Argument(help="Rule folders with tests/*.json golden files "
                                                          "(default: Vigil's own rules).")] = None,
    placeholders: Annotated[Path | None, typer.Option("--placeholders", help=PLACEHOLDERS_HELP)] = None,
) -> None:
    """Run each rule pack's golden tests: events in, expected rule ids out."""
    out = Console(highlight=False, soft_wrap=True)
    roots = paths or [builtin_rules_dir()]
    report = load_rules(roots, placeholders=placeholder_values(placeholders))
    for e in report.errors:
        out.print(f"[red]FAIL[/] {escape(str(e))}")
    try:
        results = run_golden(report.ruleset, golden_files(roots))
    except GoldenFileError as e:
        out.print(f"vigil: error: {e}")
        raise typer.Exit(2) from None
    if not results:
        out.print("vigil: error: no golden test files (tests/*.json) found")
        raise typer.Exit(2)
    failed = [r for r in results if not r.passed]
    for r in failed:
        missing = ", ".join(sorted(r.expected - r.actual)) or "-"
        extra = ", ".join(sorted(r.actual - r.expected)) or "-"
        out.print(f"[red]FAIL[/] {r.path}: {r.name}: missing {missing}; unexpected {extra}")
    out.print(f"{len(results)} cases, {len(results) - len(failed)} passed, {len(failed)} failed")
    if failed or report.errors:
        raise typer.Exit(1)
