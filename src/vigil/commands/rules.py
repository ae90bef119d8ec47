"""`vigil rules check|test`: validate Sigma rules and run their golden tests; `vigil rules import|update|list|
enable|disable|set-level`: the content store of imported Sigma releases and which of their rules run where."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from vigil.commands._common import audit_server_change
from vigil.commands.triage import PLACEHOLDERS_HELP, cache_dir, placeholder_values
from vigil.config import data_dir_from_env
from vigil.content.store import DEFAULT_PACK, ContentError, ContentStore, ImportReport, content_root
from vigil.detect import load_rules
from vigil.detect.testing import GoldenFileError, golden_files, run_golden

app = typer.Typer(help="Check Sigma rules, run their tests, and manage imported rule content.", no_args_is_help=True)

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Vigil's data directory (default $VIGIL_DATA_DIR "
                                              "or /var/lib/vigil); its content store is <data dir>/content")]
Group = Annotated[str | None, typer.Option("--group", "-g", help="Only for this device group (default: store-wide)")]


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


def _store(data_dir: Path | None) -> ContentStore:
    d = data_dir_from_env(data_dir)
    if not d.is_dir():
        raise _fail(ContentError(f"data directory {d} does not exist: run `vigil setup --data-dir {d}` (or `vigil "
                                 "up`) first, or pass --data-dir"))
    return ContentStore(content_root(d))


def _fail(e: ContentError) -> typer.Exit:
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"vigil: error: {escape(str(e))}")
    return typer.Exit(2)


def _audit(data_dir: Path | None, action: str, target: str, after: dict[str, object]) -> None:
    """Record a change of rule content in the server's audit log as the OS user and host (``cli:user@host``),
    as the portal records its own."""
    audit_server_change(data_dir, action, "rule_content", target, after)


def _print_import(report: ImportReport, verb: str) -> None:
    out = Console(highlight=False, soft_wrap=True)
    for e in report.errors:
        out.print(f"[red]FAIL[/] {escape(str(e))}")
    if report.already:
        out.print(f"{report.pack} {report.version} is already in the store; nothing {verb}; {report.pack} runs "
                  f"{report.version}")
        return
    out.print(f"{verb} {report.pack} {report.version}: {report.files} files, {report.rules} rules loaded, "
              f"{len(report.errors)} failed; {report.pack} now runs {report.version}")


ReleaseFrom = Annotated[str, typer.Option("--from", help="A Sigma release: a folder, its zip as downloaded, or the "
                                          "https URL of the zip on its release page.")]
PackName = Annotated[str, typer.Option("--pack", help="Name of the pack in the store.")]
Version = Annotated[str | None, typer.Option("--version", help="Version to keep it as (default: the release tag "
                                             "in its name, e.g. r2024-09-02, else a hash of its files).")]


@app.command("import")
def import_rules(source: ReleaseFrom, pack: PackName = DEFAULT_PACK, version: Version = None,
                 data_dir: DataDir = None) -> None:
    """Import a Sigma release into the content store; every rule loads or is reported with its reason."""
    try:
        report = _store(data_dir).import_from(source, pack=pack, version=version)
    except ContentError as e:
        raise _fail(e) from None
    _audit(data_dir, "content.import", report.pack, _import_facts(report, source))
    _print_import(report, "imported")


@app.command("update")
def update_rules(source: ReleaseFrom, pack: PackName = DEFAULT_PACK, version: Version = None,
                 data_dir: DataDir = None) -> None:
    """Import a newer release of a pack; it becomes the version that runs (the older stay in the store)."""
    try:
        report = _store(data_dir).import_from(source, pack=pack, version=version, update=True)
    except ContentError as e:
        raise _fail(e) from None
    _audit(data_dir, "content.update", report.pack, _import_facts(report, source))
    _print_import(report, "updated")


def _import_facts(report: ImportReport, source: str) -> dict[str, object]:
    return {"version": report.version, "from": source, "rules": report.rules, "failed": len(report.errors),
            "alreadyKept": report.already}


@app.command("list")
def list_rules(group: Group = None, data_dir: DataDir = None,
               state: Annotated[str | None, typer.Option("--state", help="Only 'enabled' or 'disabled' rules.")]
               = None) -> None:
    """The store's rules: pack, version, status, effective level, whether it runs, and its file; then the rules
    that did not load, with file, line and column."""
    if state not in (None, "enabled", "disabled"):
        raise _fail(ContentError(f"--state {state!r}: use enabled or disabled"))
    try:
        store = _store(data_dir)
        entries = store.entries(group)
        errors = store.load_errors()
    except ContentError as e:
        raise _fail(e) from None
    out = Console(highlight=False, soft_wrap=True)
    shown = [r for r in entries if state is None or r.enabled == (state == "enabled")]
    for r in shown:
        on = "on " if r.enabled else "off"
        out.print(f"{on}  {r.rule_id}  {r.level:<13} {r.status or '-':<12} {r.pack} {r.version}  {escape(r.path)}  "
                  f"{escape(r.title)}")
    for err in errors:
        out.print(f"[red]FAIL[/] {escape(str(err))}")
    enabled = sum(r.enabled for r in entries)
    where = f"device group {group}" if group else "store-wide"
    out.print(f"{len(entries)} rules, {enabled} on, {len(entries) - enabled} off ({where}); {len(errors)} did not "
              "load")


Targets = Annotated[list[str], typer.Argument(help="Rule ids, or folders written pack/path (e.g. "
                                              "sigmahq/rules/linux/auditd).")]


def _switch(targets: list[str], enabled: bool, group: str | None, data_dir: Path | None) -> None:
    try:
        taken = _store(data_dir).set_enabled(targets, enabled, group)
    except ContentError as e:
        raise _fail(e) from None
    for t in targets:
        _audit(data_dir, "content.switch", t, {"enabled": enabled, "group": group})
    out = Console(highlight=False, soft_wrap=True)
    for t in taken:
        out.print(f"{'enabled' if enabled else 'disabled'} {escape(t)}"
                  + (f" for device group {escape(group)}" if group else ""))


@app.command("enable")
def enable(targets: Targets, group: Group = None, data_dir: DataDir = None) -> None:
    """Switch rules or whole folders on (store-wide or for one device group)."""
    _switch(targets, True, group, data_dir)


@app.command("disable")
def disable(targets: Targets, group: Group = None, data_dir: DataDir = None) -> None:
    """Switch rules or whole folders off (store-wide or for one device group)."""
    _switch(targets, False, group, data_dir)


@app.command("set-level")
def set_level(rule_id: Annotated[str, typer.Argument(help="The rule's id.")],
              level: Annotated[str, typer.Argument(help="informational, low, medium, high or critical.")],
              group: Group = None, data_dir: DataDir = None) -> None:
    """Give a rule another level (and so severity) in the alerts it raises."""
    try:
        _store(data_dir).set_level(rule_id, level, group)
    except ContentError as e:
        raise _fail(e) from None
    _audit(data_dir, "content.set_level", rule_id, {"level": level.lower(), "group": group})
    Console(highlight=False).print(f"{rule_id}: level {level.lower()}" + (f" for device group {group}" if group
                                                                          else ""))


def import_at_first_start(data_dir: Path, source: Path, console: Console) -> None:
    """`vigil up --rules-from`: import the release unless the store has the pack already (a later start keeps
    what the operator has; `vigil rules update` brings a new release). A release that cannot be imported is
    said and the server starts without it."""
    store = ContentStore(content_root(data_dir))
    try:
        if DEFAULT_PACK in store.packs():
            console.print(f"Rule content: {DEFAULT_PACK} already imported; `vigil rules update --from` for a new "
                          "release.")
            return
        report = store.import_release(source)
    except ContentError as e:
        console.print(f"[red]Rule content not imported:[/] {escape(str(e))}")
        return
    _audit(data_dir, "content.import", report.pack, {**_import_facts(report, str(source)),
                                                     "via": "vigil up --rules-from"})
    console.print(f"Rule content: imported {report.pack} {report.version} ({report.rules} rules, "
                  f"{len(report.errors)} did not load: `vigil rules list` names them)")


@app.command("backtest")
def backtest(
    rule: Annotated[str, typer.Argument(help="a rule id of the server's rule set, or a Sigma rule file or folder "
                                             "(a rule not enabled yet)")],
    days: Annotated[int, typer.Option("--days", help="how far back to run it")] = 7,
    output: Annotated[str, typer.Option("--output", help="table or json")] = "table",
    data_dir: DataDir = None,
    as_user: Annotated[str | None, typer.Option("--as", help="with this Vigil user's device groups")] = None,
) -> None:
    """Run rules over the stored telemetry of the last N days: the alerts they would have raised, per device,
    with samples, through the same matchers as live detection (docs/hunting.md, Back-testing)."""
    import json
    import sys

    from vigil.app import backtest as app_backtest
    from vigil.app.stores import history_reader
    from vigil.commands._common import CommandError, acting, local_store, settings_for, translated
    from vigil.core.clock import SystemClock

    if output not in ("table", "json"):
        raise typer.BadParameter("use table or json", param_hint="--output")
    settings = settings_for(data_dir)
    path = Path(rule)
    if path.exists():
        report = load_rules([path])
        if report.errors:
            raise CommandError(f"{rule}: {report.errors[0]}")
        if not len(report.ruleset):
            raise CommandError(f"{rule}: no Sigma rule in it")
        ruleset, ids = report.ruleset, None
    else:
        from vigil.server.detection import load_ruleset

        placeholders = Path(settings.rule_placeholders) if settings.rule_placeholders else None
        ruleset = load_ruleset(settings.rule_paths, placeholders, ContentStore(content_root(settings.data_dir)))
        ids = [rule]
    err = Console(stderr=True, highlight=False)

    def progress(done: int, total: int | None) -> None:
        if sys.stderr.isatty():
            sys.stderr.write(f"\r{done:,} / {total or 0:,} events")
            sys.stderr.flush()

    with local_store(settings) as store, translated():
        result = app_backtest.backtest(store, history_reader(store), SystemClock(), acting(store, as_user), ruleset,
                                       ids, days, progress)
    if sys.stderr.isatty():
        sys.stderr.write("\r\x1b[K")
    if output == "json":
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    out = Console(highlight=False, soft_wrap=True)
    out.print(f"{result['events']:,} events of the last {days} days in {result['seconds']} s: "
              f"{result['alerts']} alerts would have been raised")
    for r in result["rules"]:
        devices = ", ".join(f"{d} ({n})" for d, n in r["devices"].items())
        out.print(f"{escape(r['ruleId'])}  {escape(r['title'])}  [{r['severity']}]: {r['alerts']} alerts from "
                  f"{r['hits']} hits on {escape(devices)}")
    if not result["rules"]:
        err.print("no hits")
