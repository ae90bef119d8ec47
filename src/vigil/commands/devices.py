"""`vigil devices`: the device inventory and response actions from the console, through the same services."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console

from vigil.app import actions as app_actions
from vigil.app import devices as app_devices
from vigil.commands._common import AsUser, DataDir, acting, local_store, settings_for, translated
from vigil.core.clock import SystemClock

app = typer.Typer(help="Devices: list them, isolate one.", no_args_is_help=True)
console = Console(stderr=True)


def _iso(d: datetime | None) -> str | None:
    return d.isoformat().replace("+00:00", "Z") if d is not None else None


@app.command("list")
def list_(
    data_dir: DataDir = None, as_user: AsUser = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document on stdout")] = False,
) -> None:
    """The devices in your device groups (all of them for the console), by host name."""
    settings = settings_for(data_dir)
    with local_store(settings) as store, translated():
        found = app_devices.list_devices(store, SystemClock(), acting(store, as_user))
    if as_json:
        print(json.dumps([{
            "id": d.record.id, "computerDnsName": d.record.computer_dns_name, "osPlatform": d.record.os_platform,
            "rbacGroupId": d.record.group_id, "rbacGroupName": d.record.group_name,
            "healthStatus": d.health.value, "lastSeen": _iso(d.record.last_seen),
            "isOffboarded": d.record.offboarded_at is not None,
        } for d in found], indent=2))
        return
    for d in found:
        print(f"{d.record.id}  {d.record.computer_dns_name:<32} {d.record.group_name:<28} {d.health.value}")
    console.print(f"{len(found)} device(s).")


@app.command()
def isolate(
    device: Annotated[str, typer.Argument(help="device id, host name or id prefix (8+ characters)")],
    comment: Annotated[str, typer.Option(help="why; kept with the action and in the audit record")],
    data_dir: DataDir = None, as_user: AsUser = None,
    selective: Annotated[bool, typer.Option(help="keep Vigil's own connection and the allow list open")] = False,
    require_approval: Annotated[bool, typer.Option(help="hold the action until another user approves it")] = False,
) -> None:
    """Isolate a device from the network; its agent applies the signed command at its next poll."""
    settings = settings_for(data_dir)
    with local_store(settings, sign_actions=True) as store, translated():
        who = acting(store, as_user)
        found = app_devices.resolve(store, who, device, need_view=False)
        action = app_actions.isolate(store, SystemClock(), who, found.id, comment,
                                     "Selective" if selective else "Full", require_approval=require_approval)
    print(action.id)
    console.print(f"Isolation of {found.computer_dns_name} ({found.id}) requested: action {action.id}, "
                  f"{action.status.value}" + (", awaiting approval" if require_approval else "") + ".")
