"""Server-side commands: setup, server, up, onboarding packages, offboarding, generated docs."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Annotated

import httpx
import typer
import uvicorn
from rich.console import Console

from vigil.app import devices as app_devices
from vigil.app import onboarding as app_onboarding
from vigil.commands._common import (
    CommandError,
    DataDir,
    local_principal,
    local_store,
    settings_for,
    translated,
    whoami,
)
from vigil.config import Settings, data_dir_from_env
from vigil.core.clock import SystemClock
from vigil.core.telemetry import schema_markdown
from vigil.deploy.onboarding import create_package, parse_duration
from vigil.deploy.setup import SetupReport, run_setup
from vigil.server.app import create_app
from vigil.store import db

console = Console(stderr=True)
# Re-exported for the command groups that still import them from here.
_settings = settings_for
_whoami = whoami


def _print_setup(report: SetupReport) -> None:
    if not report.changed:
        console.print(f"Vigil is already set up in {report.settings.data_dir}; nothing changed.")
        return
    for item in report.created:
        console.print(f"[green]created[/] {item}")
    if report.admin_password:
        console.print(
            f"\n[bold]Administrator:[/] {report.admin_username}\n[bold]Password:[/] {report.admin_password}\n"
            "This password is shown once. Store it now."
        )


def setup(
    data_dir: DataDir = None,
    listen: Annotated[str | None, typer.Option(help="host:port the server listens on")] = None,
    public_url: Annotated[str | None, typer.Option(help="URL agents use to reach the server")] = None,
    retention_days: Annotated[int | None, typer.Option(help="days of telemetry kept (30–186)")] = None,
    admin: Annotated[str, typer.Option(help="name of the first administrator")] = "admin",
    plan: Annotated[Path | None, typer.Option(
        "--plan", help="a plan file prepared and signed with `vigil plan … --plan FILE`: apply it")] = None,
) -> None:
    """Create the data directory, internal CA, server certificate, database and first administrator.

    With --plan, also carry the prepared plan in (its versions and sign-offs) and apply it: roles, user groups,
    device groups and rings.
    """
    from vigil.commands.plan import apply_plan_file, check_plan_file

    prepared = check_plan_file(plan) if plan is not None else None
    overrides: dict[str, object] = {}
    if listen:
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit():
            raise CommandError(f"--listen {listen!r}: use host:port, e.g. 0.0.0.0:8443")
        overrides.update(listen_host=host, listen_port=int(port))
    if public_url:
        overrides["public_url"] = public_url
    if retention_days is not None:
        overrides["retention_days"] = retention_days
    report = run_setup(data_dir_from_env(data_dir), SystemClock(), admin_username=admin, overrides=overrides)
    _print_setup(report)
    if prepared is not None:
        apply_plan_file(report.settings, prepared)


def _uvicorn_config(settings: Settings) -> uvicorn.Config:
    app = create_app(settings)
    tls = {}
    if settings.tls:
        tls = {"ssl_certfile": str(settings.server_cert), "ssl_keyfile": str(settings.server_key)}
    return uvicorn.Config(
        app, host=settings.listen_host, port=settings.listen_port, log_level="info", access_log=False,
        # uvicorn would believe X-Forwarded-For from any loopback peer; server/proxies.py honours only trusted_proxies.
        proxy_headers=False, server_header=False,
        **tls,  # type: ignore[arg-type]
    )


def server(data_dir: DataDir = None) -> None:
    """Run the Vigil server (agent API, REST API and portal)."""
    settings = _settings(data_dir)
    console.print(f"Vigil server on {settings.url} (portal {settings.url}/, API {settings.url}/api/docs)")
    uvicorn.Server(_uvicorn_config(settings)).run()


def onboarding_package(
    data_dir: DataDir = None,
    group: Annotated[str | None, typer.Option(help="device group the devices join")] = None,
    expires: Annotated[str, typer.Option(help="token lifetime: 30m, 12h, 7d, 2w")] = "7d",
    uses: Annotated[int, typer.Option(help="how many devices may enroll with it")] = 1,
    output: Annotated[Path, typer.Option("--output", "-o", help="where to write the package")] = Path(
        "vigil-onboarding.json"
    ),
    override_reason: Annotated[str | None, typer.Option(
        help="onboard production devices before every sign-off of the plan (audited)")] = None,
) -> None:
    """Write an onboarding package: server URL, CA pin and an expiring enrollment token.

    The same onboarding service as the API and the portal: the plan's sign-off gate applies here too.
    """
    settings = _settings(data_dir)
    with local_store(settings, migrate=True) as store, translated():
        pkg = app_onboarding.write_package(
            store, SystemClock(), local_principal(), app_onboarding.ServerIdentity.of(settings),
            app_onboarding.PackageRequest(group, expires, uses, override_reason),
        )
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(pkg.model_dump_json(indent=2))
    console.print(
        f"Wrote {output}: group {pkg.group!r}, {uses} use(s), expires {pkg.expires_at:%Y-%m-%d %H:%M} UTC.\n"
        f"On the endpoint: vigil agent enroll {output.name} && vigil agent run"
    )


def offboard(
    device: Annotated[str, typer.Argument(help="device id or host name")], data_dir: DataDir = None,
    comment: Annotated[str | None, typer.Option(help="why; kept in the audit record")] = None,
) -> None:
    """Revoke a device's identity: its agent can no longer send or receive anything."""
    settings = _settings(data_dir)
    who = local_principal()
    with local_store(settings) as store, translated():
        found = app_devices.resolve(store, who, device)
        done = app_devices.offboard(store, SystemClock(), who, found.id, comment)
    console.print(f"{'Offboarded' if done.changed else 'Already offboarded:'} {found.computer_dns_name} ({found.id}).")


def _wait_healthy(url: str, ca: Path, stop: threading.Event, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop.is_set():
        try:
            ctx = ssl.create_default_context(cafile=str(ca))
            if httpx.get(f"{url}/api/health", verify=ctx, timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def _start_local_agent(settings: Settings, stop: threading.Event, procs: list[subprocess.Popen[bytes]]) -> None:
    """Enroll (once) and start the local agent as a child process, once the server answers."""
    if not _wait_healthy(settings.url, settings.ca_cert, stop):
        console.print("[red]The server did not become healthy; the local agent was not started.[/]")
        return
    state = settings.data_dir / "agent"
    state.mkdir(mode=0o700, exist_ok=True)
    vigil = [sys.executable, "-m", "vigil", "agent"]
    if not (state / "identity.json").exists():
        engine = db.make_engine(settings.db_url)
        with engine.begin() as conn:
            pkg = create_package(
                conn, settings, group=None, lifetime=parse_duration("1h"), uses=1, created_by="vigil up",
                now=SystemClock().now(),
            )
        engine.dispose()
        package = state / "onboarding.json"
        package.write_text(pkg.model_dump_json())
        package.chmod(0o600)
        done = subprocess.run([*vigil, "enroll", str(package), "--state-dir", str(state)], check=False)
        package.unlink()
        if done.returncode != 0:
            console.print("[red]The local agent could not enroll; see above.[/]")
            return
    if not stop.is_set():
        procs.append(subprocess.Popen([*vigil, "run", "--state-dir", str(state)]))
        console.print("Local agent started.")


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _next_steps(settings: Settings) -> list[str]:
    """The commands a newcomer runs next, spelled out in full: `vigil` may not be on PATH after `make up`."""
    launcher = Path(sys.executable).parent / "vigil"
    vigil = str(launcher) if launcher.exists() else "vigil"
    d, agent = settings.data_dir, settings.data_dir / "agent"
    return [
        f"{vigil} devices list --data-dir {d}",
        f"{vigil} agent health --state-dir {agent}",
        f"{vigil} users add alice --role read-only --data-dir {d}",
        f"{vigil} plan status --data-dir {d}",
    ]


def _print_next_steps(settings: Settings) -> None:
    console.print("[bold]Next[/] (in another terminal; from the checkout the CLI finds ./var by itself):")
    for line in _next_steps(settings):
        console.print(f"  {line}", soft_wrap=True, highlight=False)


def up(
    data_dir: DataDir = None,
    rules_from: Annotated[Path | None, typer.Option("--rules-from", help="A Sigma release (folder or zip) to import "
                                                    "into the rule content store at first start")] = None,
) -> None:
    """Set up if needed, then run the server on SQLite with a local agent enrolled to it."""
    d = data_dir_from_env(data_dir)
    report = run_setup(d, SystemClock())
    _print_setup(report)
    settings = report.settings
    if rules_from is not None:
        from vigil.commands.rules import import_at_first_start

        import_at_first_start(settings.data_dir, rules_from, console)
    creds = settings.data_dir / "admin-credentials.json"
    if report.admin_password:
        # `vigil up` is the evaluation path: keep the generated credentials where the operator can find them.
        fd = os.open(creds, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"username": report.admin_username, "password": report.admin_password}, f)
    stop = threading.Event()
    procs: list[subprocess.Popen[bytes]] = []
    # uvicorn shuts down on SIGTERM, then re-raises it against the handler found before it started: the default
    # one would kill this process before the `finally` below stops the agent (left running, reparented to PID 1).
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    starter = threading.Thread(target=_start_local_agent, args=(settings, stop, procs), daemon=True)
    try:
        starter.start()
        console.print(f"\n[bold]Portal:[/] {settings.url}/   (trust the CA certificate {settings.ca_cert})",
                      soft_wrap=True)
        if creds.exists():
            saved = json.loads(creds.read_text())
            console.print(f"[bold]Sign in:[/] {saved['username']} / {saved['password']}   (kept in {creds})",
                          soft_wrap=True)
        _print_next_steps(settings)
        uvicorn.Server(_uvicorn_config(settings)).run()
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the agent's stop short
        stop.set()
        if starter.is_alive():
            starter.join(timeout=30)  # an enrolment under way appends its agent, or sees `stop` and starts none
        for p in procs:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


docs_app = typer.Typer(help="Generate reference documentation.", no_args_is_help=True)


@docs_app.command("schema")
def docs_schema(output: Annotated[Path | None, typer.Option("--output", "-o")] = None) -> None:
    """Print (or write) the telemetry schema reference generated from the declared schema."""
    text = schema_markdown()
    if output:
        output.write_text(text)
    else:
        typer.echo(text, nl=False)
