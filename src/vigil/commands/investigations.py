"""`vigil investigations list|show|start|cancel`: automated investigations, through the same service as the API."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from vigil.app import air
from vigil.app.air_ports import InvestigationRecord
from vigil.commands._common import AsUser, DataDir, acting, local_store, settings_for, translated
from vigil.core.clock import SystemClock

app = typer.Typer(help="Automated investigations: list, show, start on a device or alert, cancel.",
                  no_args_is_help=True)


class Output(StrEnum):
    TABLE = "table"
    JSON = "json"


OutputOpt = Annotated[Output, typer.Option("--output", help="table or json")]


def _row(r: InvestigationRecord) -> dict[str, Any]:
    return {"id": str(r.id), "state": r.state, "machineId": r.machine_id, "computerDnsName": r.computer_dns_name,
            "triggeringAlertId": r.triggering_alert_id, "triggeredBy": r.triggered_by,
            "automationLevel": r.automation_level, "startTime": r.start_time.isoformat(),
            "endTime": r.end_time.isoformat() if r.end_time else None, "statusDetails": r.status_details}


def _detail(inv: air.Investigation) -> dict[str, Any]:
    return {**_row(inv.record), "entities": list(inv.record.entities), "verdicts": list(inv.record.verdicts),
            "remediations": [{"kind": r.kind, "targetPath": r.target_path, "decision": r.decision,
                              "machineActionId": r.action_id, "outcome": air.outcome(r)} for r in inv.remediations],
            "log": list(inv.record.log), "expansion": inv.record.expansion}


def _print(inv: air.Investigation, output: Output) -> None:
    if output is Output.JSON:
        print(json.dumps(_detail(inv), indent=2, default=str))
        return
    r = inv.record
    console = Console()
    console.print(f"Investigation {r.id} on {r.computer_dns_name}: {r.state} ({r.automation_level})")
    for v in r.verdicts:
        if v["verdict"] != "NoThreatsFound":
            console.print(f"  {v['verdict']}: {v['entityKey']} — " + "; ".join(x["text"] for x in v["reasons"]))
    for x in inv.remediations:
        console.print(f"  {x.kind} {x.target_path}: {air.outcome(x)}"
                      + (f" (machine action {x.action_id})" if x.action_id else ""))


@app.command("list")
def list_(
    state: Annotated[str | None, typer.Option("--state", help="Running, PendingApproval, ...")] = None,
    machine: Annotated[str | None, typer.Option("--machine", help="a device id")] = None,
    output: OutputOpt = Output.TABLE, data_dir: DataDir = None, as_user: AsUser = None,
) -> None:
    """Investigations, newest first."""
    settings = settings_for(data_dir)
    with local_store(settings) as store, translated():
        found = air.listing(store, SystemClock(), acting(store, as_user), state=state, machine_id=machine)
    if output is Output.JSON:
        print(json.dumps([_row(r) for r in found], indent=2))
        return
    table = Table("Id", "State", "Device", "Trigger", "Started")
    for r in found:
        table.add_row(str(r.id), r.state, r.computer_dns_name, r.triggered_by, r.start_time.isoformat())
    Console().print(table)


@app.command("show")
def show(investigation_id: Annotated[int, typer.Argument(help="the investigation's id")],
         output: OutputOpt = Output.TABLE, data_dir: DataDir = None, as_user: AsUser = None) -> None:
    """One investigation: verdicts with their reasons, remediations and where they stand."""
    settings = settings_for(data_dir)
    with local_store(settings) as store, translated():
        inv = air.get(store, SystemClock(), acting(store, as_user), investigation_id)
    _print(inv, output)


@app.command("start")
def start(
    machine: Annotated[str | None, typer.Option("--machine", help="investigate this device's last day")] = None,
    alert: Annotated[str | None, typer.Option("--alert", help="investigate around this alert")] = None,
    comment: Annotated[str | None, typer.Option("--comment")] = None,
    output: OutputOpt = Output.TABLE, data_dir: DataDir = None, as_user: AsUser = None,
) -> None:
    """Start an investigation on a device or around an alert; remediations follow the device group's level."""
    if (machine is None) == (alert is None):
        raise typer.BadParameter("give exactly one of --machine and --alert")
    settings = settings_for(data_dir)
    with local_store(settings, sign_actions=True) as store, translated():
        who = acting(store, as_user)
        inv = air.start_for_alert(store, SystemClock(), who, alert) if alert else air.start(
            store, SystemClock(), who, str(machine), triggered_by="Device", comment=comment)
    _print(inv, output)


@app.command("cancel")
def cancel(investigation_id: Annotated[int, typer.Argument(help="the investigation's id")],
           comment: Annotated[str | None, typer.Option("--comment")] = None,
           output: OutputOpt = Output.TABLE, data_dir: DataDir = None, as_user: AsUser = None) -> None:
    """Stop an investigation (Terminated by user); actions already issued stay in the action center."""
    settings = settings_for(data_dir)
    with local_store(settings) as store, translated():
        inv = air.cancel(store, SystemClock(), acting(store, as_user), investigation_id, comment)
    _print(inv, output)
