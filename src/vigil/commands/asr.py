"""`vigil asr rules|whatif`: the ASR rule catalogue and the what-if replay, through the same service as the API."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from vigil.app import asr as asr_service
from vigil.app.stores import hunt_runner
from vigil.commands._common import AsUser, DataDir, acting, local_store, settings_for, translated
from vigil.core.clock import SystemClock

app = typer.Typer(help="Attack surface reduction: the rule catalogue and the what-if replay.", no_args_is_help=True)
console = Console(stderr=True)


class Output(StrEnum):
    TABLE = "table"
    JSON = "json"


@app.command("rules")
def rules(
    output: Annotated[Output, typer.Option("--output", help="table or json")] = Output.TABLE,
    data_dir: DataDir = None, as_user: AsUser = None,
) -> None:
    """List the ASR rules: GUID, name, title, ATT&CK technique."""
    settings = settings_for(data_dir)
    with local_store(settings) as store, translated():
        entries = asr_service.rules(acting(store, as_user))
    if output is Output.JSON:
        print(json.dumps([{"id": r.guid, "name": r.name, "title": r.title, "description": r.description,
                           "technique": r.technique, "table": r.table, "limits": r.limits} for r in entries], indent=2))
        return
    table = Table("GUID", "Name", "Title", "Technique")
    for r in entries:
        table.add_row(r.guid, r.name, r.title, r.technique)
    Console().print(table)


@app.command("whatif")
def whatif(
    rule: Annotated[str, typer.Argument(help="the rule's GUID or name (vigil asr rules)")],
    days: Annotated[int, typer.Option("--days", help="how many days of telemetry to replay")] = 7,
    output: Annotated[Output, typer.Option("--output", help="table or json")] = Output.TABLE,
    data_dir: DataDir = None, as_user: AsUser = None,
) -> None:
    """Replay RULE over the stored telemetry: what a Block would have stopped (device, process, command line, count)."""
    settings = settings_for(data_dir)
    with local_store(settings) as store, translated():
        result = asr_service.whatif(store, hunt_runner(store), SystemClock(), acting(store, as_user), rule, days)
    if output is Output.JSON:
        print(json.dumps(whatif_json(result), indent=2))
        return
    table = Table("Device", "Process", "Command line", "Target", "Count", "Last seen")
    for h in result.hits:
        table.add_row(h.device_name or h.device_id, h.process, h.command_line, h.target, str(h.count), h.last_seen)
    Console().print(table)
    console.print(f"{result.rule.name}: {result.total} event(s) a Block would have stopped in {result.days} day(s)"
                  f" ({result.rows_scanned} row(s) replayed" + (", truncated at the row quota)" if result.truncated
                                                                  else ")"))


def whatif_json(result: asr_service.WhatIf) -> dict[str, object]:
    return {
        "ruleId": result.rule.guid, "ruleName": result.rule.name, "days": result.days,
        "rowsScanned": result.rows_scanned, "truncated": result.truncated, "total": result.total,
        "hits": [{"deviceId": h.device_id, "deviceName": h.device_name, "process": h.process,
                  "commandLine": h.command_line, "target": h.target, "count": h.count,
                  "firstSeen": h.first_seen, "lastSeen": h.last_seen} for h in result.hits],
    }
