"""`vigil agent`: enroll this endpoint, run the agent, show its health, resend held batches."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from vigil.agent.config import STATE_DIR_ENV, AgentConfig, default_state_dir
from vigil.agent.config_file import LOCAL_CONFIG, MANAGED_CONFIG, load_config
from vigil.agent.enroll import enroll as enroll_device
from vigil.agent.errors import AgentError, ServerRejected
from vigil.agent.health import read_health
from vigil.agent.local_audit import record as audit_locally
from vigil.agent.runner import run_agent
from vigil.agent.spool import SPOOL_FILE, release_held
from vigil.agent.transport import ProxyEnv

app = typer.Typer(help="The Vigil endpoint agent.", no_args_is_help=True)
console = Console(stderr=True)

StateDir = Annotated[
    Path | None,
    typer.Option("--state-dir", help=f"Agent state directory (default ${STATE_DIR_ENV}, else ./var/agent if "
                 "`make up` enrolled one there, else /var/lib/vigil/agent)"),
]


class Output(StrEnum):
    TABLE = "table"
    JSON = "json"


@contextmanager
def _user_errors() -> Iterator[None]:
    """Errors the user can act on become one clear line and exit code 2; bugs keep their traceback."""
    try:
        yield
    except ServerRejected as e:
        console.print(f"[red]vigil agent: the server refused:[/] {e.error}: {e.detail}"
                      + (f" (field: {e.field})" if e.field else "") + f" [HTTP {e.status}]")
        raise typer.Exit(2) from None
    except AgentError as e:
        console.print(f"[red]vigil agent: error:[/] {e}")
        raise typer.Exit(2) from None


@app.command()
def enroll(
    package: Annotated[Path, typer.Argument(help="Onboarding package (JSON) from `vigil onboarding-package`")],
    state_dir: StateDir = None,
) -> None:
    """Enroll this device with the server named in the onboarding package."""
    state = state_dir or default_state_dir(os.environ)
    with _user_errors():
        identity = enroll_device(package, state, proxy=ProxyEnv.of(os.environ))
    audit_locally(state, "agent.enroll", identity.device_id, {"server": identity.server_url, "package": str(package)})
    console.print(f"Enrolled as device [bold]{identity.device_id}[/] with {identity.server_url}.")
    console.print(f"Identity saved in {state / 'identity.json'} (mode 0600). Start with: vigil agent run")


def _setup_logging(config: AgentConfig, verbose: bool) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if config.log_file is not None:
        config.log_file.parent.mkdir(parents=True, exist_ok=True)
        # Rotated by the agent itself, so no logrotate configuration has to match it.
        handlers.append(RotatingFileHandler(config.log_file, maxBytes=config.log_max_bytes,
                                            backupCount=config.log_backups))
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
    )


@app.command()
def run(
    state_dir: StateDir = None,
    config_file: Annotated[Path, typer.Option("--config", help="Local settings (TOML); skipped when absent")]
    = LOCAL_CONFIG,
    managed_file: Annotated[Path, typer.Option("--managed-config", help="Managed settings; override local ones")]
    = MANAGED_CONFIG,
    heartbeat_seconds: Annotated[float | None, typer.Option(min=0.1, help="Seconds between heartbeats")] = None,
    batch_seconds: Annotated[float | None, typer.Option(min=0.05, help="Longest wait before sending a batch")]
    = None,
    no_audit: Annotated[bool, typer.Option("--no-audit", help="Do not install audit rules")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the agent until SIGTERM or Ctrl-C (needs root for its sensors)."""
    overrides: dict[str, Any] = {}
    if state_dir is not None:
        overrides["state_dir"] = state_dir
    if heartbeat_seconds is not None:
        overrides["heartbeat_seconds"] = heartbeat_seconds
    if batch_seconds is not None:
        overrides["batch_seconds"] = batch_seconds
    if no_audit:
        overrides["use_audit"] = False
    with _user_errors():
        loaded = load_config(config_file, managed_file, overrides, default_state_dir(os.environ))
        _setup_logging(loaded.config, verbose)
        log = logging.getLogger("vigil.agent")
        log.info("settings from %s", ", ".join(map(str, loaded.sources)) or "defaults and flags")
        if loaded.managed_keys:
            log.warning("managed settings override local ones: %s", ", ".join(loaded.managed_keys))
        run_agent(loaded.config, environ=os.environ)  # read here, at the edge, and passed in


def _flatten(prefix: str, value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from _flatten(f"{prefix}.{k}" if prefix else k, v)
    else:
        yield prefix, "" if value is None else str(value) if not isinstance(value, dict) else "{}"


@app.command()
def health(
    state_dir: StateDir = None,
    field: Annotated[str | None, typer.Option(help="Print one field, e.g. counters.acknowledged")] = None,
    output: Annotated[Output, typer.Option(help="table or json")] = Output.TABLE,
) -> None:
    """Show identity, sensors, counters, spool depth and the last successful upload."""
    with _user_errors():
        report = read_health(state_dir or default_state_dir(os.environ))
        if field:
            value = report.get(field)
            typer.echo(json.dumps(value) if output is Output.JSON or isinstance(value, dict) else value)
            return
    if output is Output.JSON:
        typer.echo(json.dumps(report.as_dict(), indent=2))
        return
    table = Table(show_header=False, box=None)
    for key, value in _flatten("", report.as_dict()):
        table.add_row(key, value)
    Console().print(table)


@app.command("resend-held")
def resend_held(
    state_dir: StateDir = None,
    batch_id: Annotated[str | None, typer.Option("--batch-id", help="Only this held batch")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the held batches, release none")] = False,
) -> None:
    """Send held batches again (those set aside after repeated server errors), once the server is fixed."""
    state = state_dir or default_state_dir(os.environ)
    with _user_errors():
        chosen = release_held(state / SPOOL_FILE, batch_id, dry_run=dry_run)
    if batch_id is not None and not chosen:
        console.print(f"[red]vigil agent: error:[/] no held batch {batch_id!r}")
        raise typer.Exit(2)
    for h in chosen:
        typer.echo(f"{h.batch_id}: {h.events} events, held {h.held_at} after {h.attempts} attempts ({h.error})")
    events = sum(h.events for h in chosen)
    if dry_run:
        typer.echo(f"{len(chosen)} held batches ({events} events); none released (--dry-run)")
        return
    if chosen:
        audit_locally(state, "agent.resend_held", batch_id or "*",
                      {"batches": [h.batch_id for h in chosen], "events": events})
    typer.echo(f"Released {len(chosen)} held batches ({events} events): the running agent sends them at its"
               " next pass, a stopped one when it starts.")


@app.command("asr-override")
def asr_override(
    rule: Annotated[str | None, typer.Argument(help="The ASR rule (GUID or name) whose Warn decision to override")]
    = None,
    path: Annotated[str, typer.Option("--path", help="Only this program or file (a glob, as exclusions take)")] = "",
    process: Annotated[str, typer.Option("--process", help="Only when this process acts (path or file name)")] = "",
    hours: Annotated[float, typer.Option("--hours", help="How long the override lasts")] = 24.0,
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the local and the server's audit)")] = "",
    list_: Annotated[bool, typer.Option("--list", help="List the overrides in force, grant none")] = False,
    revoke_id: Annotated[str | None, typer.Option("--revoke", help="Remove the override with this id")] = None,
    state_dir: StateDir = None,
    output: Annotated[Output, typer.Option(help="table or json")] = Output.TABLE,
) -> None:
    """Let an ASR rule in Warn mode through on this device (for 24 hours by default): the running agent lets the
    covered matches run, and reports the override to the server, which audits it (asr.warn.override)."""
    from datetime import UTC, datetime

    from vigil.agent.asr_overrides import OverrideError, grant, listed, revoke
    from vigil.asr import UnknownAsrRule, find

    state = state_dir or default_state_dir(os.environ)
    now = datetime.now(UTC)
    try:
        if list_:
            items = [o for o in listed(state) if o.active(now)]
            if output is Output.JSON:
                typer.echo(json.dumps([vars(o) for o in items], indent=2))
            for o in items if output is Output.TABLE else ():
                typer.echo(f"{o.id}  {o.rule_name}  path={o.path or '*'} process={o.process or '*'}  until"
                           f" {o.expires}  by {o.granted_by}" + (f"  ({o.reason})" if o.reason else ""))
            return
        if revoke_id is not None:
            gone = revoke(state, revoke_id)
            audit_locally(state, "agent.asr_override.revoke", gone.rule_id, {"id": gone.id})
            typer.echo(f"Revoked override {gone.id} of {gone.rule_name}.")
            return
        if rule is None:
            raise OverrideError("name the rule to override (a GUID or a name such as ExecFromTempOrRemovable)")
        made = grant(state, find(rule), now, _granted_by(), hours=hours, path=path, process=process,
                     reason=reason)
    except (OverrideError, UnknownAsrRule) as e:
        console.print(f"[red]vigil agent: error:[/] {e}")
        raise typer.Exit(2) from None
    audit_locally(state, "agent.asr_override", made.rule_id, vars(made))
    if output is Output.JSON:
        typer.echo(json.dumps(vars(made), indent=2))
        return
    typer.echo(f"Override {made.id}: {made.rule_name} in Warn mode lets "
               f"{made.path or 'every match'} through until {made.expires}.")


def _granted_by() -> str:
    """``cli:user@host``, the user behind sudo when there is one."""
    import socket

    user = os.environ.get("SUDO_USER") or os.environ.get("USER") or str(os.getuid())
    return f"cli:{user}@{socket.gethostname()}"
