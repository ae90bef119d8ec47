"""`vigil audit`: the audit log from the console (newest entries, the chain check), through the audit service."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer
from rich.console import Console

from vigil.app import audit as app_audit
from vigil.commands._common import AsUser, CommandError, DataDir, acting, local_store, settings_for, translated

app = typer.Typer(help="The audit log: list the newest entries, verify the hash chain.", no_args_is_help=True)
console = Console(stderr=True)


@app.command("list")
def list_(
    action: Annotated[str | None, typer.Option(help="only entries of this action, e.g. device.offboard")] = None,
    top: Annotated[int, typer.Option(min=1, max=10_000, help="how many entries")] = 50,
    data_dir: DataDir = None, as_user: AsUser = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document on stdout, as the API's value")] = False,
) -> None:
    """The newest audit entries, newest first."""
    settings = settings_for(data_dir)
    with local_store(settings) as store, translated():
        found = app_audit.recent(store, acting(store, as_user), action, top)
    if as_json:
        print(json.dumps([{**asdict(e.entry), "at": e.entry.at.isoformat().replace("+00:00", "Z"), "hash": e.hash}
                          for e in found], indent=2, ensure_ascii=False, default=str))
        return
    for e in found:
        x = e.entry
        print(f"{x.seq:>6}  {x.at:%Y-%m-%d %H:%M:%S}  {x.actor:<28} {x.action:<28} {x.target_type} {x.target_id}")
    console.print(f"{len(found)} entr{'y' if len(found) == 1 else 'ies'}.")


@app.command()
def verify(data_dir: DataDir = None, as_user: AsUser = None) -> None:
    """Check the audit log's hash chain; exit 1 at the first entry that does not follow."""
    settings = settings_for(data_dir)
    with local_store(settings) as store, translated():
        report = app_audit.verify(store, acting(store, as_user))
    if not report.ok:
        raise CommandError(f"audit chain broken at entry {report.first_bad_seq}: {report.problem} "
                           f"({report.checked} entries checked before it)", exit_code=1)
    print(f"ok: {report.checked} entries, the chain is unbroken")
