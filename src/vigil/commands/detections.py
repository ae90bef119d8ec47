"""`vigil detections list|show|create|update|delete|run`: custom detection rules from the console, through the
same service as the API (`/api/security/rules/detectionRules`), audited as ``cli:user@host``."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from vigil.app import detections as svc
from vigil.app.detections import Detection
from vigil.app.stores import detection_repository, hunt_runner
from vigil.commands._common import AsUser, CommandError, DataDir, acting, local_store, settings_for, translated
from vigil.core.clock import SystemClock
from vigil.hunt.detections import DetectionError, RuleFields, check_fields

app = typer.Typer(help="Custom detection rules: hunting queries run on a schedule that raise alerts.",
                  no_args_is_help=True)


class Output(StrEnum):
    TABLE = "table"
    JSON = "json"


OutputOpt = Annotated[Output, typer.Option("--output", help="table or json")]
RuleId = Annotated[int, typer.Argument(help="the rule's id (`vigil detections list`)")]
Query = Annotated[str | None, typer.Option("--query", help="the hunting query (SQL or the KQL subset)")]
QueryFile = Annotated[Path | None, typer.Option("--query-file", help="read the query from this file")]
Period = Annotated[str | None, typer.Option("--period", help="1H, 3H, 12H or 24H")]
Title = Annotated[str | None, typer.Option("--title", help="the alerts' title")]
Severity = Annotated[str | None, typer.Option("--severity", help="Informational, Low, Medium or High")]
Category = Annotated[str | None, typer.Option("--category", help="the alerts' category (an ATT&CK tactic)")]
Technique = Annotated[list[str] | None, typer.Option("--technique", help="an ATT&CK technique id (repeatable)")]
Description = Annotated[str | None, typer.Option("--description")]
Action = Annotated[list[str] | None, typer.Option(
    "--action", help="an automatic action (repeatable): isolateDevice, collectInvestigationPackage, "
    "runAntivirusScan, restrictAppExecution, stopAndQuarantineFile, initiateInvestigation")]


def _as_json(d: Detection) -> dict[str, Any]:
    f = d.fields
    return {"id": d.id, "displayName": f.display_name, "isEnabled": f.enabled,
            "queryCondition": {"queryText": f.query_text}, "schedule": {"period": f.period},
            "detectionAction": {"alertTemplate": {"title": f.title, "description": f.description,
                                                  "severity": f.severity, "category": f.category,
                                                  "mitreTechniques": list(f.techniques)},
                                "responseActions": list(f.response_actions)},
            "detectorId": d.rule_id, "createdBy": d.created_by, "lastModifiedBy": d.last_modified_by,
            "lastRunDetails": {"lastRunDateTime": d.last_run_at.isoformat() if d.last_run_at else None,
                               "status": d.last_run_status, "failureReason": d.last_failure_reason}}


def _print(rules: list[Detection], output: Output) -> None:
    if output is Output.JSON:
        typer.echo(json.dumps([_as_json(d) for d in rules], indent=2))
        return
    table = Table("id", "name", "enabled", "period", "severity", "last run", "status")
    for d in rules:
        table.add_row(str(d.id), d.fields.display_name, "yes" if d.fields.enabled else "no", d.fields.period,
                      d.fields.severity, d.last_run_at.isoformat() if d.last_run_at else "-", d.last_run_status or "-")
    Console().print(table)


def _query(query: str | None, query_file: Path | None) -> str | None:
    if query_file is not None:
        if not query_file.is_file():
            raise CommandError(f"{query_file}: no such file")
        return query_file.read_text()
    return query


def _checked(**kw: Any) -> RuleFields:
    try:
        return check_fields(**kw)
    except DetectionError as e:
        raise CommandError(str(e)) from None


@app.command("list")
def list_rules(output: OutputOpt = Output.TABLE, data_dir: DataDir = None, as_user: AsUser = None) -> None:
    """The custom detection rules with their last run."""
    with local_store(settings_for(data_dir)) as store, translated():
        _print(svc.list_detections(detection_repository(store), acting(store, as_user)), output)


@app.command("show")
def show(rule_id: RuleId, output: OutputOpt = Output.JSON, data_dir: DataDir = None, as_user: AsUser = None) -> None:
    """One rule and its recent runs."""
    with local_store(settings_for(data_dir)) as store, translated():
        repo = detection_repository(store)
        d = svc.get_detection(repo, acting(store, as_user), rule_id)
        runs = repo.runs(rule_id)
    if output is Output.JSON:
        typer.echo(json.dumps({**_as_json(d), "runs": runs}, indent=2))
    else:
        _print([d], output)


@app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", help="the rule's display name (unique)")],
    title: Annotated[str, typer.Option("--title", help="the alerts' title")],
    severity: Annotated[str, typer.Option("--severity", help="Informational, Low, Medium or High")],
    query: Query = None, query_file: QueryFile = None, period: Annotated[str, typer.Option(
        "--period", help="1H, 3H, 12H or 24H")] = "24H",
    category: Category = None, technique: Technique = None, description: Description = None, action: Action = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="create it switched off")] = False,
    output: OutputOpt = Output.TABLE, data_dir: DataDir = None, as_user: AsUser = None,
) -> None:
    """Make a rule from a hunting query; its results need Timestamp, DeviceId and ReportId."""
    text = _query(query, query_file)
    if not text:
        raise CommandError("give the query with --query or --query-file")
    fields = _checked(display_name=name, query_text=text, period=period, enabled=not disabled, title=title,
                      description=description or "", severity=severity, category=category or "",
                      techniques=technique or [], response_actions=action or [])
    with local_store(settings_for(data_dir)) as store, translated():
        d = svc.create_detection(store, detection_repository(store), hunt_runner(store), SystemClock(),
                                 acting(store, as_user), fields)
    _print([d], output)


@app.command("update")
def update(
    rule_id: RuleId, name: Annotated[str | None, typer.Option("--name")] = None, query: Query = None,
    query_file: QueryFile = None, period: Period = None, title: Title = None, severity: Severity = None,
    category: Category = None, technique: Technique = None, description: Description = None, action: Action = None,
    enable: Annotated[bool | None, typer.Option("--enable/--disable", help="switch the rule on or off")] = None,
    output: OutputOpt = Output.TABLE, data_dir: DataDir = None, as_user: AsUser = None,
) -> None:
    """Change some of a rule's fields; the others stay."""
    with local_store(settings_for(data_dir)) as store, translated():
        repo, who = detection_repository(store), acting(store, as_user)
        old = svc.get_detection(repo, who, rule_id).fields
        text = _query(query, query_file)
        merged = {**asdict(old), **{k: v for k, v in {
            "display_name": name, "query_text": text, "period": period, "title": title, "severity": severity,
            "category": category, "description": description, "enabled": enable,
            "techniques": technique, "response_actions": action}.items() if v is not None}}
        fields = _checked(**merged)
        d = svc.update_detection(store, repo, hunt_runner(store), SystemClock(), who, rule_id, replace(fields))
    _print([d], output)


@app.command("delete")
def delete(rule_id: RuleId, data_dir: DataDir = None, as_user: AsUser = None) -> None:
    """Delete a rule (its alerts stay)."""
    with local_store(settings_for(data_dir)) as store, translated():
        svc.delete_detection(store, detection_repository(store), SystemClock(), acting(store, as_user), rule_id)
    typer.echo(f"deleted custom detection rule {rule_id}")


@app.command("run")
def run(rule_id: RuleId, output: OutputOpt = Output.TABLE, data_dir: DataDir = None,
        as_user: AsUser = None) -> None:
    """Run a rule now (outside its schedule); the run is recorded like a scheduled one."""
    with local_store(settings_for(data_dir), sign_actions=True) as store, translated():
        r = svc.run_now(detection_repository(store), hunt_runner(store), SystemClock(), acting(store, as_user),
                        rule_id, store)
    if output is Output.JSON:
        typer.echo(json.dumps({"status": r.status, "rows": r.rows, "newHits": r.new_hits,
                               "durationMs": r.duration_ms, "error": r.error, "disabled": r.disabled,
                               "actions": [a.as_json() for a in r.actions]}))
    else:
        typer.echo(f"rule {rule_id}: {r.status}, {r.rows} rows, {r.new_hits} new hits in {r.duration_ms:.0f} ms"
                   + (f": {r.error}" if r.error else "") + (" (switched off)" if r.disabled else ""))
        for a in r.actions:
            typer.echo(f"  {a.action} on {a.device_id}: " + (f"refused: {a.error}" if a.error else
                                                               f"action {a.machine_action_id}"))
    if r.status == "failed":
        raise typer.Exit(1)
