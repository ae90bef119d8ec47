"""`vigil indicators list|add|delete|import|export`: indicators through the same service as /api/indicators."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from vigil.app import indicators as app_indicators
from vigil.asr.indicators import IndicatorAction, IndicatorType
from vigil.commands._common import AsUser, CommandError, DataDir, acting, local_store, settings_for, translated
from vigil.core.clock import SystemClock

app = typer.Typer(help="Indicators: file hashes, certificates, IPs, domains and URLs to allow, audit, warn or block.",
                  no_args_is_help=True)
console = Console(stderr=True)


class Output(StrEnum):
    TABLE = "table"
    JSON = "json"


OutputOption = Annotated[Output, typer.Option("--output", help="table or json")]


def indicator_json(item: app_indicators.Listed) -> dict[str, Any]:
    """The API's shape (Defender's field names), so scripts read the CLI and the API alike."""
    from vigil.server.api.indicators import indicator_info

    return indicator_info(item).model_dump()


def _table(items: list[app_indicators.Listed]) -> None:
    table = Table("Id", "Type", "Value", "Action", "Severity", "Title", "Expires", "Device groups")
    for i in items:
        ind = i.record.indicator
        table.add_row(str(ind.id), ind.indicator_type.value, ind.indicator_value, ind.action.value, ind.severity,
                      ind.title, ind.expiration_time.isoformat() if ind.expiration_time else "",
                      ", ".join(i.group_names) or "all")
    Console().print(table)


@app.command("list")
def list_(output: OutputOption = Output.TABLE, data_dir: DataDir = None, as_user: AsUser = None) -> None:
    """List the indicators you may see."""
    with local_store(settings_for(data_dir)) as store, translated():
        items = app_indicators.list_indicators(store, acting(store, as_user))
    if output is Output.JSON:
        print(json.dumps([indicator_json(i) for i in items], indent=2))
    else:
        _table(items)


@app.command("add")
def add(
    value: Annotated[str, typer.Argument(help="the hash, address, domain or URL")],
    type_: Annotated[IndicatorType, typer.Option("--type", help="the indicator type")],
    action: Annotated[IndicatorAction, typer.Option("--action", help="what to do on a match")],
    title: Annotated[str, typer.Option("--title", help="shown in alerts and events")],
    description: Annotated[str, typer.Option("--description")] = "",
    severity: Annotated[str, typer.Option("--severity", help="Informational, Low, Medium or High")] = "Informational",
    expires: Annotated[str | None, typer.Option("--expires", help="ISO 8601 expiry time (UTC unless given)")] = None,
    group: Annotated[list[str] | None, typer.Option("--group", help="a device group it applies to (repeat); "
                                                                     "default every group")] = None,
    generate_alert: Annotated[bool, typer.Option("--generate-alert/--no-alert")] = False,
    output: OutputOption = Output.TABLE, data_dir: DataDir = None, as_user: AsUser = None,
) -> None:
    """Submit an indicator, or update the one of the same type and value; the devices it reaches get it at once."""
    body: dict[str, Any] = {"indicatorValue": value, "indicatorType": type_.value, "action": action.value,
                            "title": title, "description": description, "severity": severity,
                            "expirationTime": expires, "generateAlert": generate_alert}
    if group:
        body["rbacGroupNames"] = group
    with local_store(settings_for(data_dir), sign_actions=True) as store, translated():
        item, created = app_indicators.submit(store, SystemClock(), acting(store, as_user), body)
    if output is Output.JSON:
        print(json.dumps(indicator_json(item), indent=2))
        return
    console.print(f"{'created' if created else 'updated'} indicator {item.record.indicator.id}: "
                  f"{item.record.indicator.indicator_type} {item.record.indicator.indicator_value} "
                  f"{item.record.indicator.action}")


@app.command("delete")
def delete(indicator_id: Annotated[int, typer.Argument(help="the indicator's id (vigil indicators list)")],
           data_dir: DataDir = None, as_user: AsUser = None) -> None:
    """Delete an indicator."""
    with local_store(settings_for(data_dir), sign_actions=True) as store, translated():
        app_indicators.delete(store, SystemClock(), acting(store, as_user), indicator_id)
    console.print(f"deleted indicator {indicator_id}")


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="Defender's template CSV, or JSON {\"Indicators\": [...]}",
                                         exists=True, dir_okay=False)],
    output: OutputOption = Output.TABLE, data_dir: DataDir = None, as_user: AsUser = None,
) -> None:
    """Import a batch: good rows are saved, each bad row is reported (exit code 2 when any was refused)."""
    text = file.read_text(encoding="utf-8-sig")
    with local_store(settings_for(data_dir), sign_actions=True) as store, translated():
        who = acting(store, as_user)
        if file.suffix.lower() == ".json":
            try:
                data = json.loads(text)
            except ValueError as e:
                raise CommandError(f"{file}: not JSON: {e}") from None
            rows = data.get("Indicators") if isinstance(data, dict) else data
            if not isinstance(rows, list):
                raise CommandError(f"{file}: expected a list of indicators or {{\"Indicators\": [...]}}")
            results = app_indicators.import_rows(store, SystemClock(), who, rows)
        else:
            results = app_indicators.import_csv(store, SystemClock(), who, text)
    failed = [r for r in results if r.record is None]
    if output is Output.JSON:
        print(json.dumps([{"id": str(r.record.record.indicator.id) if r.record else None, "indicator": r.value,
                           "isFailed": r.record is None, "failureReason": r.error or None} for r in results],
                         indent=2))
    else:
        for r in failed:
            console.print(f"row {r.index + 1}: {r.error}")
        console.print(f"{len(results) - len(failed)} indicator(s) saved, {len(failed)} refused")
    if failed:
        raise typer.Exit(2)


@app.command("export")
def export(
    file: Annotated[Path | None, typer.Option("--file", help="write here instead of standard output")] = None,
    data_dir: DataDir = None, as_user: AsUser = None,
) -> None:
    """Export the indicators you may see as Defender's template CSV."""
    with local_store(settings_for(data_dir)) as store, translated():
        text = app_indicators.export_csv(store, acting(store, as_user))
    if file is None:
        print(text, end="")
    else:
        file.write_text(text, encoding="utf-8")
        console.print(f"wrote {file}")
