"""`vigil integrations`: streaming destinations and their health, OAuth2 applications, Windows event sources.

Through the same services as /api/streaming/destinations, /api/applications and /api/ingest/sources; each change
is audited as ``cli:user@host``. ``--output json`` prints the API's shapes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from vigil.app import applications as app_apps
from vigil.app import shippers as app_sources
from vigil.app import streaming as app_stream
from vigil.app.stores import application_store, destination_store, open_engine, source_store
from vigil.commands._common import CommandError, DataDir, local_principal, settings_for, translated
from vigil.core.clock import SystemClock

app = typer.Typer(help="Integrations: streaming export to SIEMs, OAuth2 applications, Windows event sources.",
                  no_args_is_help=True)
destinations = typer.Typer(help="Streaming destinations (webhook, syslog, splunk_hec, elasticsearch, file).",
                           no_args_is_help=True)
apps = typer.Typer(help="OAuth2 client-credentials applications.", no_args_is_help=True)
sources = typer.Typer(help="Windows event sources (Winlogbeat, Fluent Bit) allowed to post events.",
                      no_args_is_help=True)
app.add_typer(destinations, name="destinations")
app.add_typer(apps, name="apps")
app.add_typer(sources, name="sources")


class Output(StrEnum):
    TABLE = "table"
    JSON = "json"


OutputOption = Annotated[Output, typer.Option("--output", help="table or json")]


@contextmanager
def _engine(data_dir: Path | None) -> Iterator[Any]:
    engine = open_engine(settings_for(data_dir).db_url)
    try:
        yield engine
    finally:
        engine.dispose()


def _catalogue() -> Any:
    from vigil.integrations.stream import Catalogue

    return Catalogue()


def _dest_json(h: app_stream.Health) -> dict[str, Any]:
    from vigil.server.api.streaming import info

    return info(h).model_dump()


def _print(output: Output, rows: list[dict[str, Any]], columns: list[str]) -> None:
    if output is Output.JSON:
        print(json.dumps(rows, indent=2))
        return
    table = Table(*columns)
    for r in rows:
        table.add_row(*("" if r.get(c) is None else str(r.get(c)) for c in columns))
    Console().print(table)


@app.command("status")
def status(output: OutputOption = Output.TABLE, data_dir: DataDir = None) -> None:
    """Each streaming destination's health: lag (stored batches not yet delivered), records sent and failed,
    the last error."""
    with _engine(data_dir) as engine, translated():
        found = app_stream.listing(destination_store(engine), local_principal(), _catalogue())
    _print(output, [_dest_json(h) for h in found],
           ["name", "type", "enabled", "lag", "recordsSent", "recordsFailed", "lastSentTime", "lastError"])


def _settings(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CommandError(f"--set {pair!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(value)  # numbers, true/false; anything else is text
        except json.JSONDecodeError:
            out[key] = value
    return out


@destinations.command("add")
def add_destination(
    name: Annotated[str, typer.Argument(help="a name for the destination")],
    type_: Annotated[str, typer.Option("--type", help="webhook, syslog, splunk_hec, elasticsearch or file")],
    table: Annotated[list[str], typer.Option("--table", help="a telemetry table or AlertInfo (repeat)")],
    setting: Annotated[list[str] | None, typer.Option(
        "--set", help="a setting, KEY=VALUE (repeat): url=..., host=..., port=514, format=cef, token=...")] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="create it disabled")] = False,
    output: OutputOption = Output.TABLE, data_dir: DataDir = None,
) -> None:
    """Add a destination; it receives the chosen tables' records stored from now on."""
    with _engine(data_dir) as engine, translated():
        h = app_stream.create(destination_store(engine), SystemClock(), local_principal(), _catalogue(), name,
                              type_, _settings(setting or []), table, not disabled)
    _print(output, [_dest_json(h)], ["id", "name", "type", "enabled", "tables"])


@destinations.command("list")
def list_destinations(output: OutputOption = Output.TABLE, data_dir: DataDir = None) -> None:
    """The destinations with their settings (secrets masked)."""
    with _engine(data_dir) as engine, translated():
        found = app_stream.listing(destination_store(engine), local_principal(), _catalogue())
    _print(output, [_dest_json(h) for h in found], ["id", "name", "type", "enabled", "tables", "settings"])


def _enable(ref: str, enabled: bool, output: Output, data_dir: Path | None) -> None:
    with _engine(data_dir) as engine, translated():
        h = app_stream.set_enabled(destination_store(engine), SystemClock(), local_principal(), _catalogue(), ref,
                                   enabled)
    _print(output, [_dest_json(h)], ["id", "name", "enabled", "lag"])


@destinations.command("enable")
def enable(ref: Annotated[str, typer.Argument(help="id or name")], output: OutputOption = Output.TABLE,
           data_dir: DataDir = None) -> None:
    """Resume sending from where it stopped."""
    _enable(ref, True, output, data_dir)


@destinations.command("disable")
def disable(ref: Annotated[str, typer.Argument(help="id or name")], output: OutputOption = Output.TABLE,
            data_dir: DataDir = None) -> None:
    """Stop sending; the cursor stays where it is."""
    _enable(ref, False, output, data_dir)


@destinations.command("delete")
def delete(ref: Annotated[str, typer.Argument(help="id or name")], data_dir: DataDir = None) -> None:
    with _engine(data_dir) as engine, translated():
        app_stream.delete(destination_store(engine), SystemClock(), local_principal(), _catalogue(), ref)


def _app_json(a: app_apps.Application) -> dict[str, Any]:
    from vigil.server.api.applications import info

    return info(a).model_dump()


@apps.command("create")
def create_app(
    name: Annotated[str, typer.Argument()],
    role: Annotated[list[str], typer.Option("--role", help="a Defender application permission, e.g. "
                                                           "Alert.Read.All (repeat)")],
    secret_days: Annotated[int, typer.Option("--secret-days", help="client secret lifetime")] = 365,
    output: OutputOption = Output.TABLE, data_dir: DataDir = None,
) -> None:
    """Register an application; its client secret is printed once."""
    with _engine(data_dir) as engine, translated():
        done = app_apps.register(application_store(engine), SystemClock(), local_principal(), name, role,
                                 secret_days)
    _print(output, [{**_app_json(done.app), "clientSecret": done.client_secret}],
           ["id", "name", "clientId", "clientSecret", "roles", "secretExpiresAt"])


@apps.command("list")
def list_apps(output: OutputOption = Output.TABLE, data_dir: DataDir = None) -> None:
    with _engine(data_dir) as engine, translated():
        found = app_apps.list_applications(application_store(engine), local_principal())
    _print(output, [_app_json(a) for a in found], ["id", "name", "clientId", "roles", "secretExpiresAt", "revoked"])


@apps.command("revoke")
def revoke_app(app_id: Annotated[int, typer.Argument()], output: OutputOption = Output.TABLE,
               data_dir: DataDir = None) -> None:
    """Revoke an application: its tokens stop working at once."""
    with _engine(data_dir) as engine, translated():
        a = app_apps.revoke(application_store(engine), SystemClock(), local_principal(), app_id)
    _print(output, [_app_json(a)], ["id", "name", "revoked"])


def _source_json(s: app_sources.Source) -> dict[str, Any]:
    from vigil.server.api.eventsources import info

    return info(s).model_dump()


@sources.command("create")
def create_source(name: Annotated[str, typer.Argument()], output: OutputOption = Output.TABLE,
                  data_dir: DataDir = None) -> None:
    """Register a shipper; its secret is printed once."""
    with _engine(data_dir) as engine, translated():
        source, secret = app_sources.register(source_store(engine), SystemClock(), local_principal(), name)
    _print(output, [{**_source_json(source), "secret": secret}], ["id", "name", "secret"])


@sources.command("list")
def list_sources(output: OutputOption = Output.TABLE, data_dir: DataDir = None) -> None:
    with _engine(data_dir) as engine, translated():
        found = app_sources.listing(source_store(engine), local_principal())
    _print(output, [_source_json(s) for s in found], ["id", "name", "events", "lastSeenTime", "revoked"])


@sources.command("revoke")
def revoke_source(source_id: Annotated[int, typer.Argument()], output: OutputOption = Output.TABLE,
                  data_dir: DataDir = None) -> None:
    with _engine(data_dir) as engine, translated():
        s = app_sources.revoke(source_store(engine), SystemClock(), local_principal(), source_id)
    _print(output, [_source_json(s)], ["id", "name", "revoked"])
