"""`vigil hunt QUERY`: advanced hunting from the console, through the same service as the API."""

from __future__ import annotations

import csv
import json
import sys
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from vigil.app import hunting
from vigil.app.stores import hunt_runner
from vigil.commands._common import AsUser, DataDir, acting, local_store, settings_for, translated
from vigil.core.clock import SystemClock

console = Console(stderr=True)


class Output(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, dict | list):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def hunt(
    query: Annotated[str, typer.Argument(help="a read-only SQL query over the telemetry tables")],
    output: Annotated[Output, typer.Option("--output", help="table, json ({Schema, Results}) or csv")] = Output.TABLE,
    max_rows: Annotated[int, typer.Option("--max-rows", min=1, max=hunting.MAX_ROWS)] = hunting.MAX_ROWS,
    data_dir: DataDir = None, as_user: AsUser = None,
) -> None:
    """Run an advanced-hunting query (docs/hunting.md) over the stored telemetry."""
    settings = settings_for(data_dir)
    with local_store(settings) as store, translated():
        result = hunting.run_query(store, hunt_runner(store), SystemClock(), acting(store, as_user), query,
                                   max_rows=max_rows)
    names = [c["Name"] for c in result.schema]
    if output is Output.JSON:
        print(json.dumps({"Schema": result.schema, "Results": result.results}, indent=2, default=str))
    elif output is Output.CSV:
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(names)
        for row in result.results:
            w.writerow([_text(row.get(n)) for n in names])
    else:
        table = Table(*names)
        for row in result.results:
            table.add_row(*(_text(row.get(n)) for n in names))
        Console().print(table)
        console.print(f"{len(result.results)} row(s)" + (" (truncated at the row quota)" if result.truncated else ""))
