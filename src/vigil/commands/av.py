"""`vigil av`: the antivirus on this machine — scans, definitions, bundles, quarantine (works with no server)."""

from __future__ import annotations

import json
import os
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from vigil import __version__
from vigil.agent.config import STATE_DIR_ENV, default_state_dir
from vigil.agent.local_audit import record as audit_locally
from vigil.av import bundle as bundles
from vigil.av.bundle import BundleError, InstalledDefinitions
from vigil.av.definitions import Definitions, builtin
from vigil.av.engine import Engine
from vigil.av.hashes import HashListError
from vigil.av.quarantine import QuarantineError, QuarantineStore
from vigil.av.scan import Progress, ScanReport, ScanType, be_polite, paths_for, run_scan
from vigil.commands._common import CommandError

app = typer.Typer(help="Antivirus (next-generation protection): scans, definitions, bundles, quarantine.",
                  no_args_is_help=True)
scan_app = typer.Typer(help="Scan now: quick, full or custom PATH.", no_args_is_help=True)
bundle_app = typer.Typer(help="Definition bundles: build a signed one.", no_args_is_help=True)
definitions_app = typer.Typer(help="The installed definitions: show, import a bundle.", no_args_is_help=True)
threat_app = typer.Typer(help="Threats found on this machine.", no_args_is_help=True)
quarantine_app = typer.Typer(help="Quarantined files: list, restore, remove.", no_args_is_help=True)
app.add_typer(scan_app, name="scan")
app.add_typer(bundle_app, name="bundle")
app.add_typer(definitions_app, name="definitions")
app.add_typer(threat_app, name="threat")
threat_app.add_typer(quarantine_app, name="quarantine")

PUBLIC_KEY_ENV = "VIGIL_AV_PUBLIC_KEY"
EXIT_THREATS = 1  # like clamscan: 0 clean, 1 threats found, 2 and up: the command failed


class Output(StrEnum):
    TABLE = "table"
    JSON = "json"


OutputOpt = Annotated[Output, typer.Option("--output", help="table or json (on stdout)")]
StateDir = Annotated[Path | None, typer.Option(
    "--state-dir", help=f"agent state directory: definitions, quarantine (default ${STATE_DIR_ENV} or "
    "/var/lib/vigil/agent)")]
PublicKey = Annotated[str | None, typer.Option(
    "--public-key", help=f"the Ed25519 key bundles must be signed with: raw base64, PEM, or a file holding either "
    f"(default ${PUBLIC_KEY_ENV}, else the key this agent pinned at enrolment, else the server's in --data-dir)")]
DataDir = Annotated[Path | None, typer.Option(
    "--data-dir", help="a server data directory whose action-signing key signs or verifies bundles")]


def _state(state_dir: Path | None) -> Path:
    return state_dir or default_state_dir(os.environ)


def _emit(output: Output, value: Any, table: str) -> None:
    typer.echo(json.dumps(value, indent=2) if output is Output.JSON else table)


# -- trust ------------------------------------------------------------------------------------------------------
def _trusted(public_key: str | None, state_dir: Path, data_dir: Path | None) -> list[Any]:
    """The keys a bundle may be signed with, from the first source that has one."""
    text = public_key or os.environ.get(PUBLIC_KEY_ENV)
    if text:
        candidate = Path(text)
        if len(text) < 4096 and candidate.is_file():
            text = candidate.read_text()
        return [bundles.public_key_from_text(text)]
    from vigil.agent.errors import IdentityError
    from vigil.agent.identity import load_identity

    try:
        pinned = load_identity(state_dir).action_public_key
    except IdentityError:
        pinned = None
    if pinned:
        return [bundles.public_key_from_text(pinned)]
    if data_dir is not None or os.environ.get("VIGIL_DATA_DIR"):
        from vigil.commands._common import settings_for
        from vigil.deploy.signing import public_key as server_public_key

        server_key = server_public_key(settings_for(data_dir))
        if server_key:
            return [bundles.public_key_from_text(server_key)]
    return []


def _definitions(bundle: Path | None, public_key: str | None, state_dir: Path, data_dir: Path | None
                 ) -> Definitions:
    """--bundle FILE, else the installed bundle, else the built-in definitions; any bundle verified first."""
    try:
        if bundle is not None:
            trusted = _need_trust(public_key, state_dir, data_dir, str(bundle))
            return bundles.read_bundle(_read(bundle), trusted, str(bundle))
        installed = InstalledDefinitions(state_dir / "av" / "definitions")
        if installed.current.exists():
            trusted = _need_trust(public_key, state_dir, data_dir, str(installed.current))
            loaded = installed.load(trusted)
            if loaded is not None:
                return loaded
    except BundleError as e:
        raise CommandError(str(e)) from None
    return builtin()


def _need_trust(public_key: str | None, state_dir: Path, data_dir: Path | None, what: str) -> list[Any]:
    trusted = _trusted(public_key, state_dir, data_dir)
    if not trusted:
        raise CommandError(f"cannot verify {what}: no trusted key; give --public-key (or ${PUBLIC_KEY_ENV}), "
                           "enroll this agent, or --data-dir of the server that signed it")
    return trusted


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise CommandError(f"{path}: {e.strerror or e}") from None


# -- scans ------------------------------------------------------------------------------------------------------
def _progress_printer() -> Any:
    start = time.monotonic()
    tty = sys.stderr.isatty()

    def show(p: Progress) -> None:
        if time.monotonic() - start < 2:  # short scans stay quiet
            return
        line = f"scanned {p.files} files, {p.bytes / 1e6:.1f} MB ({p.cached} unchanged) — {p.current}"
        if tty:
            sys.stderr.write("\r" + line[: os.get_terminal_size(2).columns - 1].ljust(40) + "\x1b[K")
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    return show


def _report_table(report: ScanReport) -> str:
    lines = [f"{report.scan_type} scan: {report.files} files, {report.bytes / 1e6:.1f} MB in {report.seconds:.1f} s; "
             f"definitions version {report.definitions_version}; {len(report.detections)} threat(s)"]
    for d in report.detections:
        lines.append(f"  {d.threat.name:<40} {d.threat.type:<9} {d.threat.severity:<7} {d.location}")
    for note in report.incomplete[:50]:
        lines.append(f"  incomplete: {note}")
    if report.errors:
        lines.append(f"  {len(report.errors)} path(s) could not be read, e.g. {report.errors[0]}")
    return "\n".join(lines)


def _scan(scan_type: ScanType, paths: list[str] | None, output: Output, bundle: Path | None,
          public_key: str | None, state_dir: Path | None, data_dir: Path | None, workers: int | None,
          exclude: list[Path] | None, progress: bool, quarantine: bool) -> None:
    state = _state(state_dir)
    definitions = _definitions(bundle, public_key, state, data_dir)
    be_polite()
    for p in paths or []:
        if not os.path.lexists(p):
            raise CommandError(f"{p}: no such file or folder")
    excluded = [str(e) for e in exclude or []] + [str(state / "quarantine")]
    from vigil.agent.antivirus import history, local_exclusions, record_scan
    from vigil.av.exclusions import ExclusionError

    try:
        exclusions = local_exclusions(state)
    except ExclusionError as e:
        raise CommandError(str(e)) from None
    report = run_scan(Engine(definitions), scan_type, paths_for(scan_type, paths), excluded=excluded,
                      exclusions=exclusions, workers=workers, on_progress=_progress_printer() if progress else None)
    if state.is_dir() and os.access(state, os.W_OK):  # history and last scans, when this user may write them
        history(state).record(report.detections, when=report.finished or report.started,
                              source=f"{scan_type.value.capitalize()} scan",
                              action="Quarantined" if quarantine else "None")
        if report.finished is not None and scan_type is not ScanType.CUSTOM:
            record_scan(state, str(scan_type), report.finished)
    if progress and sys.stderr.isatty():
        sys.stderr.write("\r\x1b[K")
    result = report.as_dict()
    if quarantine and report.detections:
        store = QuarantineStore(state / "quarantine")
        moved = []
        for path in sorted({d.path for d in report.detections}):
            threat = next(d.threat for d in report.detections if d.path == path)
            try:
                moved.append(store.add(Path(path), threat=threat).as_dict())
            except (QuarantineError, OSError) as e:
                result["errors"].append(f"{path}: not quarantined: {e}")  # type: ignore[attr-defined]
        result["quarantined"] = moved
        if moved:
            audit_locally(state, "av.quarantine_add", scan_type.value,
                          {"files": [m["path"] for m in moved], "ids": [m["id"] for m in moved]})
    table = _report_table(report)
    if quarantine and report.detections:
        table += f"\n  quarantined {len(result['quarantined'])} file(s)"  # type: ignore[arg-type]
    _emit(output, result, table)
    if report.detections:
        raise typer.Exit(EXIT_THREATS)


Bundle = Annotated[Path | None, typer.Option("--bundle", help="scan with this signed bundle (verified first)")]
Workers = Annotated[int | None, typer.Option("--workers", min=1, help="scan threads (default: the CPU count)")]
Exclude = Annotated[list[Path] | None, typer.Option("--exclude", help="a path not to scan (repeatable)")]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="files, bytes and path on stderr")]
QuarantineOpt = Annotated[bool, typer.Option("--quarantine", help="move each file with a threat to the quarantine")]


@scan_app.command("custom")
def scan_custom(paths: Annotated[list[str], typer.Argument(help="files or folders")], output: OutputOpt = Output.TABLE,
                bundle: Bundle = None, public_key: PublicKey = None, state_dir: StateDir = None,
                data_dir: DataDir = None, workers: Workers = None, exclude: Exclude = None,
                progress: ProgressOpt = True, quarantine: QuarantineOpt = False) -> None:
    """Scan files and folders (archives unpacked). Exit 0: clean; 1: threats found."""
    _scan(ScanType.CUSTOM, [os.path.abspath(p) for p in paths], output, bundle, public_key, state_dir, data_dir,
          workers, exclude, progress, quarantine)


@scan_app.command("quick")
def scan_quick(output: OutputOpt = Output.TABLE, bundle: Bundle = None, public_key: PublicKey = None,
               state_dir: StateDir = None, data_dir: DataDir = None, workers: Workers = None,
               exclude: Exclude = None, progress: ProgressOpt = True, quarantine: QuarantineOpt = False) -> None:
    """Autostart and persistence locations, temporary folders, and the programs running now."""
    _scan(ScanType.QUICK, None, output, bundle, public_key, state_dir, data_dir, workers, exclude, progress,
          quarantine)


@scan_app.command("full")
def scan_full(output: OutputOpt = Output.TABLE, bundle: Bundle = None, public_key: PublicKey = None,
              state_dir: StateDir = None, data_dir: DataDir = None, workers: Workers = None,
              exclude: Exclude = None, progress: ProgressOpt = True, quarantine: QuarantineOpt = False) -> None:
    """Every local file system (kernel, remote and removable file systems left out)."""
    _scan(ScanType.FULL, None, output, bundle, public_key, state_dir, data_dir, workers, exclude, progress,
          quarantine)


# -- bundles and definitions --------------------------------------------------------------------------------------
@bundle_app.command("build")
def bundle_build(
    out: Annotated[Path, typer.Option("--out", "-o", help="the bundle file to write")],
    yara_paths: Annotated[list[Path] | None, typer.Option("--yara", help="a YARA file or folder (repeatable)")] = None,
    hash_lists: Annotated[list[Path] | None, typer.Option(
        "--hashes", help="a hash list: HEX [NAME] per line, or ClamAV HEX:SIZE:NAME (repeatable)")] = None,
    version: Annotated[int | None, typer.Option("--version", help="bundle version (default: now, in seconds)")] = None,
    key: Annotated[Path | None, typer.Option("--key", help="Ed25519 private key (PEM) to sign with")] = None,
    data_dir: DataDir = None, output: OutputOpt = Output.TABLE,
) -> None:
    """Compile YARA rules once, add hash lists and the heuristics version, sign: one versioned file."""
    from vigil.deploy.signing import SigningKeyMissing, load_key, load_private_key

    try:
        if key is not None:
            signing_key = load_private_key(key)
        else:
            from vigil.commands._common import settings_for

            signing_key = load_key(settings_for(data_dir))
    except SigningKeyMissing as e:
        raise CommandError(f"{e}; or give --key") from None
    except (OSError, ValueError) as e:
        raise CommandError(f"cannot read the signing key: {e}") from None
    try:
        data, report = bundles.build(signing_key, yara_paths=yara_paths or [], hash_lists=hash_lists or [],
                                     version=version)
    except (HashListError, BundleError, FileNotFoundError) as e:
        raise CommandError(str(e)) from None
    out.write_bytes(data)
    summary = {"file": str(out), "version": report.version, "size": report.size, "hashes": report.hashes,
               "yara_files": report.yara.files, "yara_rules": report.yara.rules, "yara_refused": report.yara.refused,
               "yara_refused_examples": report.yara.refused_examples}
    _emit(output, summary, f"{out}: version {report.version}, {report.size} bytes; hashes {report.hashes}; "
          f"YARA rules {report.yara.rules} compiled, {report.yara.refused} refused")


@definitions_app.command("show")
def definitions_show(output: OutputOpt = Output.TABLE, public_key: PublicKey = None, state_dir: StateDir = None,
                     data_dir: DataDir = None) -> None:
    """The definitions scans use: the installed bundle (verified), or the built-in ones."""
    state = _state(state_dir)
    installed = InstalledDefinitions(state / "av" / "definitions")
    definitions = _definitions(None, public_key, state, data_dir)
    summary = definitions.summary()
    summary["installed"] = str(installed.current) if installed.current.exists() else None
    summary["previous"] = str(installed.previous) if installed.previous.exists() else None
    created = definitions.created
    summary["age_days"] = round((time.time() - created.timestamp()) / 86400, 2) if created else None
    table = (f"definitions version {definitions.version}" + (" (built-in only)" if not definitions.version else "")
             + f"; created {summary['created']}; heuristics v{definitions.heuristics_version}; hashes "
             f"{summary['hashes']}; YARA rules {definitions.yara_rule_count}")
    _emit(output, summary, table)


@definitions_app.command("import")
def definitions_import(bundle: Annotated[Path, typer.Argument(help="a signed bundle (.vab)")],
                       output: OutputOpt = Output.TABLE, public_key: PublicKey = None, state_dir: StateDir = None,
                       data_dir: DataDir = None) -> None:
    """Verify and install a bundle (air-gapped update); an older or tampered bundle is refused."""
    state = _state(state_dir)
    trusted = _need_trust(public_key, state, data_dir, str(bundle))
    installed = InstalledDefinitions(state / "av" / "definitions")
    try:
        header = installed.install(_read(bundle), trusted, str(bundle))
    except BundleError as e:
        raise CommandError(str(e)) from None
    summary = {k: v for k, v in header.items() if not k.startswith("_")} | {"installed": str(installed.current)}
    audit_locally(state, "av.definitions_import", str(header["version"]), {"bundle": str(bundle)})
    _emit(output, summary, f"installed definitions version {header['version']} from {bundle}")


# -- quarantine ---------------------------------------------------------------------------------------------------
def _store(state_dir: Path | None) -> QuarantineStore:
    return QuarantineStore(_state(state_dir) / "quarantine")


@quarantine_app.command("list")
def quarantine_list(output: OutputOpt = Output.TABLE, state_dir: StateDir = None) -> None:
    """Files in the quarantine."""
    entries = _store(state_dir).list()
    rows = [f"{e.id}  {e.quarantined_at[:19]}  {(e.threat or {}).get('name', '-'):<36} {e.path}" for e in entries]
    _emit(output, [e.as_dict() for e in entries], "\n".join(rows) if rows else "the quarantine is empty")


@quarantine_app.command("restore")
def quarantine_restore(entry_id: Annotated[str, typer.Argument(help="the quarantine id")],
                       output: OutputOpt = Output.TABLE, state_dir: StateDir = None,
                       to: Annotated[Path | None, typer.Option("--to", help="restore here, not where it was")] = None,
                       ) -> None:
    """Put a file back with its bytes, mode, owner and times."""
    try:
        entry = _store(state_dir).restore(entry_id, to)
    except QuarantineError as e:
        raise CommandError(str(e), exit_code=3 if "nothing is quarantined" in str(e) else 2) from None
    audit_locally(_state(state_dir), "av.quarantine_restore", entry_id,
                  {"path": entry.path, "to": str(to or entry.path)})
    _emit(output, entry.as_dict(), f"restored {to or entry.path}")


@quarantine_app.command("remove")
def quarantine_remove(entry_id: Annotated[str, typer.Argument(help="the quarantine id")],
                      output: OutputOpt = Output.TABLE, state_dir: StateDir = None) -> None:
    """Delete a quarantined file for good."""
    try:
        entry = _store(state_dir).remove(entry_id)
    except QuarantineError as e:
        raise CommandError(str(e), exit_code=3 if "nothing is quarantined" in str(e) else 2) from None
    audit_locally(_state(state_dir), "av.quarantine_remove", entry_id, {"path": entry.path})
    _emit(output, entry.as_dict(), f"removed {entry.id} ({entry.path})")


# -- threats, exclusions, health ----------------------------------------------------------------------------------
@threat_app.command("list")
def threat_list(output: OutputOpt = Output.TABLE, state_dir: StateDir = None,
                limit: Annotated[int, typer.Option("--limit", min=1, help="the newest N")] = 100) -> None:
    """Threats found on this machine (scans and real-time protection), newest last, with the action taken."""
    from vigil.agent.antivirus import history

    records = history(_state(state_dir)).list()[-limit:]
    rows = [f"{r.time[:19]}  {r.name:<36} {r.type:<9} {r.action:<11} {r.source:<21} "
            f"{r.path + ('->' + r.member if r.member else '')}" for r in records]
    _emit(output, [r.as_dict() for r in records], "\n".join(rows) if rows else "no threats found on this machine")


exclusion_app = typer.Typer(help="Antivirus exclusions on this machine: add, list, remove.", no_args_is_help=True)
app.add_typer(exclusion_app, name="exclusion")
KindArg = Annotated[str, typer.Argument(metavar="KIND", help="path, folder, extension, file_name or process")]
ValueArg = Annotated[str, typer.Argument(metavar="VALUE", help="an absolute path, .ext, a file name or a program")]


def _exclusion_file(state: Path) -> Any:
    from vigil.agent.antivirus import exclusion_file
    from vigil.av.exclusions import ExclusionError, ExclusionFile

    try:
        return ExclusionFile.load(exclusion_file(state))
    except ExclusionError as e:
        raise CommandError(str(e)) from None


@exclusion_app.command("add")
def exclusion_add(kind: KindArg, value: ValueArg, output: OutputOpt = Output.TABLE, state_dir: StateDir = None
                  ) -> None:
    """Leave files alone in scans and real-time protection (a running agent picks it up within seconds)."""
    from vigil.av.exclusions import ExclusionError

    state = _state(state_dir)
    excl = _exclusion_file(state)
    try:
        stored = excl.add(kind, value)
    except ExclusionError as e:
        raise CommandError(str(e)) from None
    excl.save()
    audit_locally(state, "av.exclusion_add", f"{kind}:{stored}", {"kind": kind, "value": stored})
    _emit(output, {"kind": kind, "value": stored, "exclusions": excl.exclusions().as_lists()},
          f"excluded {kind} {stored}")


@exclusion_app.command("remove")
def exclusion_remove(kind: KindArg, value: ValueArg, output: OutputOpt = Output.TABLE, state_dir: StateDir = None
                     ) -> None:
    """Scan what an exclusion left alone again."""
    from vigil.av.exclusions import ExclusionError

    state = _state(state_dir)
    excl = _exclusion_file(state)
    try:
        stored = excl.remove(kind, value)
    except ExclusionError as e:
        raise CommandError(str(e), exit_code=3 if str(e).startswith("no ") else 2) from None
    excl.save()
    audit_locally(state, "av.exclusion_remove", f"{kind}:{stored}", {"kind": kind, "value": stored})
    _emit(output, {"kind": kind, "value": stored, "exclusions": excl.exclusions().as_lists()},
          f"no longer excluded: {kind} {stored}")


@exclusion_app.command("list")
def exclusion_list(output: OutputOpt = Output.TABLE, state_dir: StateDir = None) -> None:
    """This machine's exclusions, by kind."""
    lists = _exclusion_file(_state(state_dir)).exclusions().as_lists()
    rows = [f"{kind:<10} {v}" for kind, values in lists.items() for v in values]
    _emit(output, lists, "\n".join(rows) if rows else "no exclusions")


@app.command("health")
def health(output: OutputOpt = Output.TABLE, state_dir: StateDir = None, public_key: PublicKey = None,
           data_dir: DataDir = None) -> None:
    """The antivirus's state on this machine, in mdatp health's terms: real-time protection, passive mode,
    definitions, last scans (from the running agent; definitions and scans also without one)."""
    from vigil.agent.antivirus import last_scans
    from vigil.agent.health import read_health

    state = _state(state_dir)
    agent = read_health(state)
    running = agent.running_pid is not None
    raw = agent.sensors.get("antivirus_state") if running else None
    live: dict[str, Any] = json.loads(raw) if raw else {}
    definitions = _definitions(None, public_key, state, data_dir)
    created = definitions.created
    report = {
        "agent_running": running,
        "real_time_protection_enabled": bool(live.get("realTimeProtection")),
        "real_time_protection_status": agent.sensors.get("antivirus", "agent not running") if running
        else "agent not running",
        "mode": live.get("mode"),
        "passive_mode_enabled": live.get("mode") == "passive",
        "mode_reason": live.get("modeWhy"),
        "engine_version": __version__,
        "definitions_version": definitions.version,
        "definitions_updated": created.isoformat() if created else None,
        "definitions_age_days": round((time.time() - created.timestamp()) / 86400, 2) if created else None,
        "last_quick_scan": last_scans(state).get("quick"),
        "last_full_scan": last_scans(state).get("full"),
        "quarantined_files": len(QuarantineStore(state / "quarantine").list()),
        "real_time_counters": {**live.get("gate", {}), **live.get("protection", {})},
    }
    table = "\n".join(f"{k:<32} {json.dumps(v) if isinstance(v, dict) else v}" for k, v in report.items())
    _emit(output, report, table)


@definitions_app.command("update")
def definitions_update(output: OutputOpt = Output.TABLE, state_dir: StateDir = None) -> None:
    """Fetch this device group's policy and, when the server serves a newer signed bundle, install it (a running
    agent also does this every 15 minutes)."""
    from vigil.agent.antivirus import DefinitionsRefused, update_from_server
    from vigil.agent.errors import AgentError
    from vigil.agent.identity import load_identity
    from vigil.agent.transport import AgentTransport, ProxyEnv

    state = _state(state_dir)
    try:
        transport = AgentTransport(load_identity(state), 60.0, ProxyEnv.of(os.environ))
    except AgentError as e:
        raise CommandError(f"{e} (definitions update needs an enrolled agent; use definitions import offline)"
                           ) from None
    try:
        result = update_from_server(state, transport)
    except DefinitionsRefused as e:
        raise CommandError(str(e)) from None
    except AgentError as e:
        raise CommandError(f"the server could not be asked: {e}") from None
    finally:
        transport.close()
    if result.installed_now:
        audit_locally(state, "av.definitions_update", str(result.installed_version), {"source": "server"})
    table = (f"installed definitions version {result.installed_version} from the server" if result.installed_now
             else f"definitions version {result.installed_version} is current (server: {result.served_version})")
    _emit(output, result.as_dict(), table)


# -- the server's side: policy per device group, published bundles ------------------------------------------------
policy_app = typer.Typer(help="Antivirus policy per device group, on the server (--data-dir).", no_args_is_help=True)
app.add_typer(policy_app, name="policy")
GroupOpt = Annotated[str | None, typer.Option("--group", help="a device group's name (default: the global policy)")]


@policy_app.command("show")
def policy_show(output: OutputOpt = Output.TABLE, data_dir: DataDir = None, group: GroupOpt = None) -> None:
    """The global policy and each group's; with --group, what that group's devices get (merged)."""
    from vigil.app import antivirus as av_service
    from vigil.commands._common import local_principal, local_store, settings_for, translated
    from vigil.core.clock import SystemClock

    with local_store(settings_for(data_dir)) as store, translated():
        if group:
            value: Any = av_service.policy(store, SystemClock(), local_principal(), group).effective.as_dict()
        else:
            views = av_service.policies(store, SystemClock(), local_principal())
            value = {"global": views[0].policy.as_dict(),
                     "groups": {v.group_name: v.policy.as_dict() for v in views[1:] if v.record is not None}}
    _emit(output, value, json.dumps(value, indent=2))


def _switch(value: str | None, name: str) -> bool | None:
    if value is None:
        return None
    if value not in ("on", "off"):
        raise CommandError(f"--{name}: expected on or off, got {value!r}")
    return value == "on"


@policy_app.command("set")
def policy_set(
    data_dir: DataDir = None, group: GroupOpt = None, output: OutputOpt = Output.TABLE,
    realtime: Annotated[str | None, typer.Option("--realtime", help="on or off")] = None,
    mode: Annotated[str | None, typer.Option("--mode", help="auto, block, audit or passive")] = None,
    open_perm: Annotated[str | None, typer.Option("--open-perm", help="on or off: scan plain opens too")] = None,
    exclude: Annotated[list[str] | None, typer.Option(
        "--exclude", help="KIND:VALUE to add, e.g. folder:/srv/data, extension:.iso (repeatable)")] = None,
    scan: Annotated[list[str] | None, typer.Option(
        "--scan", help="TYPE@HH:MM[@mon,tue,...] a scheduled scan, e.g. quick@02:30 (repeatable; replaces)")] = None,
    action: Annotated[list[str] | None, typer.Option(
        "--action", help="TYPE:ACTION per threat type (malware, pua, test, heuristic: quarantine, remove, audit, "
        "allow), e.g. malware:remove (repeatable)")] = None,
    pua: Annotated[str | None, typer.Option("--pua", help="PUA protection: off, audit or block")] = None,
    allow_threat: Annotated[list[str] | None, typer.Option(
        "--allow-threat", help="a threat name to allow, e.g. PUA:Linux/Miner (repeatable; adds)")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="start from an empty policy for this level")] = False,
) -> None:
    """Change the global policy or a group's (in the server's store, audited, sent signed to its devices);
    settings not given stay as they are."""
    from vigil.app import antivirus as av_service
    from vigil.commands._common import local_principal, local_store, settings_for, translated
    from vigil.core.clock import SystemClock

    with local_store(settings_for(data_dir), sign_actions=True) as store, translated():
        scope = group or av_service.DEFAULT_SCOPE
        current = {} if clear else av_service.policy(store, SystemClock(), local_principal(), scope).policy.as_dict()
        raw = dict(current)
        for key, val in (("realtime", _switch(realtime, "realtime")), ("mode", mode),
                         ("open_perm", _switch(open_perm, "open-perm")), ("pua_mode", pua)):
            if val is not None:
                raw[key] = val
        for item in exclude or []:
            kind, sep, value = item.partition(":")
            if not sep:
                raise CommandError(f"--exclude {item!r}: expected KIND:VALUE")
            raw.setdefault("exclusions", {}).setdefault(kind, []).append(value)
        for item in action or []:
            kind, sep, value = item.partition(":")
            if not sep:
                raise CommandError(f"--action {item!r}: expected TYPE:ACTION, e.g. malware:remove")
            raw["threat_actions"] = {**raw.get("threat_actions", {}), kind: value}
        if allow_threat:
            raw["allowed_threats"] = [*raw.get("allowed_threats", []), *allow_threat]
        if scan:
            raw["scans"] = []
            for item in scan:
                parts = item.split("@")
                if len(parts) not in (2, 3):
                    raise CommandError(f"--scan {item!r}: expected TYPE@HH:MM or TYPE@HH:MM@mon,tue")
                entry: dict[str, Any] = {"type": parts[0], "at": parts[1]}
                if len(parts) == 3:
                    entry["days"] = parts[2].split(",")
                raw["scans"].append(entry)
        view = av_service.set_policy(store, SystemClock(), local_principal(), scope, raw)
    new = view.policy.as_dict()
    _emit(output, new, f"antivirus policy of {group or 'every device (global)'} (version "
          f"{view.record.version if view.record else 0}, sent to {view.devices_updated} device(s)): "
          + json.dumps(new))


@bundle_app.command("publish")
def bundle_publish(bundle: Annotated[Path, typer.Argument(help="a signed bundle (.vab)")],
                   data_dir: DataDir = None, group: GroupOpt = None, output: OutputOpt = Output.TABLE) -> None:
    """Serve a bundle to agents (every device, or one group's), after verifying it with the server's key."""
    from vigil.av.policy import BundleShelf
    from vigil.commands._common import audit_server_change, settings_for
    from vigil.deploy.signing import public_key as server_public_key

    settings = settings_for(data_dir)
    key = server_public_key(settings)
    if not key:
        raise CommandError(f"{settings.data_dir} has no action-signing key: agents could not verify a bundle")
    data = _read(bundle)
    try:
        header = bundles.read_header(data, [bundles.public_key_from_text(key)], str(bundle))
    except BundleError as e:
        raise CommandError(f"{e} (agents verify bundles with the server's action-signing key)") from None
    shelf = BundleShelf(settings.data_dir)
    served = shelf.for_group(group)
    if served is not None and served == shelf.path(group):
        old = bundles.read_header(served.read_bytes(), [bundles.public_key_from_text(key)], str(served))
        if int(str(old["version"])) >= int(str(header["version"])):
            raise CommandError(f"{bundle}: version {header['version']} is not newer than the published "
                               f"{old['version']}; refused")
    target = shelf.publish(data, group)
    audit_server_change(data_dir, "av.bundle_publish", "av_bundle", group or "default",
                        {"version": header["version"], "file": str(target)})
    _emit(output, {"version": header["version"], "group": group, "file": str(target)},
          f"serving definitions version {header['version']} to {group or 'every device'}")
