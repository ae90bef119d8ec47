"""`vigil devices`: the device inventory and response actions from the console, through the same services."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console

from vigil.app import actions as app_actions
from vigil.app import devices as app_devices
from vigil.commands._common import AsUser, DataDir, acting, local_store, settings_for, translated
from vigil.core.clock import SystemClock
from vigil.core.telemetry import parse_timestamp

app = typer.Typer(help="Devices: list them, tag one, read its timeline, isolate one.", no_args_is_help=True)
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


@app.command()
def tag(
    device: Annotated[str, typer.Argument(help="device id, host name or id prefix (8+ characters)")],
    value: Annotated[str, typer.Argument(help="the tag")],
    remove: Annotated[bool, typer.Option("--remove", help="remove the tag instead of adding it")] = False,
    data_dir: DataDir = None, as_user: AsUser = None,
) -> None:
    """Add or remove a device tag (Defender's "Add or Remove Tag"); the device's group follows its rules at once."""
    settings = settings_for(data_dir)
    with local_store(settings) as store, translated():
        who = acting(store, as_user)
        found = app_devices.resolve(store, who, device, need_view=False)
        d = app_devices.set_tag(store, SystemClock(), who, found.id, value, add=not remove)
    print(" ".join(d.record.tags))
    console.print(f"{d.record.computer_dns_name} ({d.record.id}) is in {d.record.group_name}.")


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        raise typer.BadParameter(f"not an ISO 8601 time: {value!r}", param_hint=name) from None


def _json_value(v: Any) -> Any:
    return _iso(v) if isinstance(v, datetime) else v


@app.command()
def timeline(
    device: Annotated[str, typer.Argument(help="device id, host name or id prefix (8+ characters)")],
    table: Annotated[list[str] | None, typer.Option(help="a telemetry table (repeat for several; default all)")] = None,
    from_: Annotated[str | None, typer.Option("--from", help="ISO 8601 start (default: 30 days ago)")] = None,
    to: Annotated[str | None, typer.Option(help="ISO 8601 end")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
    data_dir: DataDir = None, as_user: AsUser = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document on stdout, as the API's value")] = False,
) -> None:
    """A device's events, newest first, as the API's /machines/{id}/timeline returns them."""
    settings = settings_for(data_dir)
    with local_store(settings) as store, translated():
        who = acting(store, as_user)
        found = app_devices.resolve(store, who, device)
        events = app_devices.timeline(store, SystemClock(), who, found.id, _time(from_, "--from"), _time(to, "--to"),
                                      table or None, limit)
    if as_json:
        print(json.dumps([{k: _json_value(v) for k, v in e.items()} for e in events], indent=2, default=str))
        return
    for e in events:
        what = e.get("ProcessCommandLine") or e.get("FileName") or e.get("RemoteIP") or e.get("SyslogMessage") or ""
        print(f"{_iso(e['Timestamp'])}  {e['Table']:<22} {e.get('ActionType') or '':<24} {what}")
    console.print(f"{len(events)} event(s).")
