"""`vigil asr rules|whatif|policy`: the ASR rule catalogue, the what-if replay and policies per device group, through
the same services as the API."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from vigil.app import asr as asr_service
from vigil.app.stores import hunt_runner
from vigil.asr import AsrMode, catalogue
from vigil.commands._common import AsUser, CommandError, DataDir, acting, local_store, settings_for, translated
from vigil.core.clock import SystemClock

app = typer.Typer(help="Attack surface reduction: the rule catalogue, the what-if replay and policies.",
                  no_args_is_help=True)
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


policy_app = typer.Typer(help="ASR policies per device group (\"default\": the tenant default).", no_args_is_help=True)
app.add_typer(policy_app, name="policy")


def policy_json(v: asr_service.PolicyView) -> dict[str, object]:
    return {"rbacGroupId": v.group_id, "rbacGroupName": v.group_name, "version": v.record.version if v.record else 0,
            "lastUpdatedBy": v.record.updated_by if v.record else None, **v.policy.to_json(),
            "devicesUpdated": v.devices_updated}


def _print_policy(v: asr_service.PolicyView, output: Output) -> None:
    if output is Output.JSON:
        print(json.dumps(policy_json(v), indent=2))
        return
    table = Table("Rule", "Mode", "Exclusions")
    for r in catalogue():
        mode = v.policy.modes.get(r.guid)
        excl = ", ".join(f"{e.kind}:{e.pattern}" for e in v.policy.rule_exclusions.get(r.guid, ()))
        table.add_row(r.name, mode.name.title() if mode is not None else "(not set)", excl)
    Console().print(table)
    console.print(f"{v.group_name}: version {v.record.version if v.record else 0}; global exclusions: "
                  + (", ".join(f"{e.kind}:{e.pattern}" for e in v.policy.exclusions) or "none")
                  + (f"; sent to {v.devices_updated} device(s)" if v.devices_updated else ""))


@policy_app.command("list")
def policy_list(output: Annotated[Output, typer.Option("--output", help="table or json")] = Output.TABLE,
                data_dir: DataDir = None, as_user: AsUser = None) -> None:
    """The tenant default and every group's stored policy."""
    with local_store(settings_for(data_dir)) as store, translated():
        views = asr_service.policies(store, SystemClock(), acting(store, as_user))
    if output is Output.JSON:
        print(json.dumps([policy_json(v) for v in views], indent=2))
        return
    for v in views:
        _print_policy(v, output)


@policy_app.command("show")
def policy_show(group: Annotated[str, typer.Argument(help="a device group, or default")] = "default",
                output: Annotated[Output, typer.Option("--output", help="table or json")] = Output.TABLE,
                data_dir: DataDir = None, as_user: AsUser = None) -> None:
    """One policy: each rule's mode and exclusions."""
    with local_store(settings_for(data_dir)) as store, translated():
        view = asr_service.policy(store, SystemClock(), acting(store, as_user), group)
    _print_policy(view, output)


@policy_app.command("set")
def policy_set(
    group: Annotated[str, typer.Argument(help="a device group, or default")],
    file: Annotated[Path, typer.Argument(help='JSON: {"modes": {rule: mode}, "exclusions": [...], '
                                              '"ruleExclusions": {rule: [...]}}', exists=True, dir_okay=False)],
    output: Annotated[Output, typer.Option("--output", help="table or json")] = Output.TABLE,
    data_dir: DataDir = None, as_user: AsUser = None,
) -> None:
    """Replace GROUP's policy with FILE's and send it to the group's devices."""
    try:
        body = json.loads(file.read_text(encoding="utf-8"))
    except ValueError as e:
        raise CommandError(f"{file}: not JSON: {e}") from None
    with local_store(settings_for(data_dir), sign_actions=True) as store, translated():
        view = asr_service.set_policy(store, SystemClock(), acting(store, as_user), group,
                                      asr_service.parse_policy(body))
    _print_policy(view, output)


@policy_app.command("mode")
def policy_mode(
    group: Annotated[str, typer.Argument(help="a device group, or default")],
    rule: Annotated[str, typer.Argument(help="the rule's GUID or name")],
    mode: Annotated[str, typer.Argument(help="Off, Block, Audit or Warn (or 0, 1, 2, 6)")],
    output: Annotated[Output, typer.Option("--output", help="table or json")] = Output.TABLE,
    data_dir: DataDir = None, as_user: AsUser = None,
) -> None:
    """Switch one rule of GROUP's policy (run `vigil asr whatif RULE` before switching Audit to Block)."""
    try:
        parsed = AsrMode.parse(mode)
    except ValueError as e:
        raise CommandError(str(e)) from None
    with local_store(settings_for(data_dir), sign_actions=True) as store, translated():
        view = asr_service.set_mode(store, SystemClock(), acting(store, as_user), group, rule, parsed)
    _print_policy(view, output)
