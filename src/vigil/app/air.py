"""Automated investigations: start (by alert, by hand, by API), gather, judge, remediate under the device group's
automation level through signed machine actions, follow those actions to the investigation's state.

Remediations are machine actions requested by ``AIR``: those the level lets run are signed at once, the others are
held in the action center (``PendingApproval``) for an analyst to approve or reject there, with the action
center's permission, four-eyes rule and audit; each is undone like any other action.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from vigil.air import (
    Entity,
    EntityKind,
    EntityVerdict,
    InvestigationState,
    Reason,
    Signals,
    Verdict,
    judge,
    judge_related,
)
from vigil.air.evidence import Seed
from vigil.air.levels import LABELS
from vigil.air.model import RemediationDecision, RemediationKind
from vigil.air.playbook import gather
from vigil.air.remediation import Outcome, decision, expansion, propose, state_of
from vigil.app.air_ports import AirRepository, InvestigationRecord, NewInvestigation, RemediationRecord, air_repo
from vigil.app.devices import visible
from vigil.app.errors import AppError, InvalidInput, NotFound
from vigil.app.ports import (
    ActionRequest,
    AlertQuery,
    AlertRecord,
    AlertUpdate,
    AuditRecord,
    DeviceRecord,
    Store,
    UnitOfWork,
)
from vigil.app.principal import Principal
from vigil.asr.indicators import IndicatorSet, Observation
from vigil.core.actions import ActionRuleError, ActionType, validate_parameters
from vigil.core.clock import Clock
from vigil.core.groups import AutomationLevel
from vigil.core.rbac import Permission

log = logging.getLogger(__name__)

ACTOR = "AIR"
SYSTEM = Principal(ACTOR, frozenset(Permission), None, is_admin=True, username=ACTOR)
# The telemetry read around an alert, and the look-back of a device investigated by hand.
ALERT_WINDOW = timedelta(minutes=30)
DEVICE_WINDOW = timedelta(hours=24)
TRIGGERS = ("Alert", "Incident", "Device", "Api", "Expansion")

# The agent's action for each remediation (one missing here would be recorded as Unsupported, never issued).
ACTION_OF: dict[RemediationKind, ActionType] = {
    RemediationKind.QUARANTINE_FILE: ActionType.STOP_AND_QUARANTINE_FILE,
    RemediationKind.KILL_PROCESS: ActionType.KILL_PROCESS,
    RemediationKind.REMOVE_PERSISTENCE: ActionType.REMOVE_PERSISTENCE_ENTRY,
    RemediationKind.DISABLE_USER: ActionType.DISABLE_LOCAL_USER,
    RemediationKind.STOP_SERVICE: ActionType.STOP_AND_DISABLE_SERVICE,
}


@dataclass(frozen=True)
class Investigation:
    record: InvestigationRecord
    remediations: tuple[RemediationRecord, ...]


def _entity_json(e: Entity) -> dict[str, Any]:
    return {"key": e.key, "kind": e.kind.value, "machineId": e.device_id, "facts": e.facts, "parents": list(e.parents)}


def _verdict_json(v: EntityVerdict) -> dict[str, Any]:
    return {"entityKey": v.entity_key, "verdict": v.verdict.value,
            "reasons": [{"source": r.source, "weight": r.weight.value, "text": r.text} for r in v.reasons]}


def _verdict_of(d: dict[str, Any]) -> EntityVerdict:
    return EntityVerdict(d["entityKey"], Verdict(d["verdict"]), tuple(
        Reason(r["source"], Verdict(r["weight"]), r["text"]) for r in d.get("reasons", ())))


def _mentions(row: dict[str, Any], e: Entity) -> bool:
    if e.kind is EntityKind.PROCESS:
        return row.get("ProcessId") == e.facts.get("pid")
    if e.kind is EntityKind.FILE:
        return bool(e.sha256 and row.get("SHA256") == e.sha256) or bool(e.path and any(
            e.path in str(row.get(c) or "") for c in ("FolderPath", "ProcessCommandLine")))
    if e.kind is EntityKind.IP:
        return row.get("RemoteIP") == e.facts.get("ip")
    return False


def _judge(repo: AirRepository, alerts: Sequence[AlertRecord], device: DeviceRecord, entities: Sequence[Entity],
           now: datetime) -> dict[str, EntityVerdict]:
    known = IndicatorSet(repo.indicators())
    av = repo.antivirus(device.id)
    fleet = repo.fleet_size()
    starters: dict[str, list[str]] = {}
    for e in entities:
        if e.kind is EntityKind.PERSISTENCE and e.facts.get("starts"):
            starters.setdefault(str(e.facts["starts"]), []).append(f"{e.facts.get('mechanism')} entry")
    out: dict[str, EntityVerdict] = {}
    for e in entities:
        ob = Observation(sha256=e.sha256, ip=str(e.facts.get("ip") or ""), domain=str(e.facts.get("domain") or ""))
        hit = known.verdict(ob, now, device.group_id) if (ob.sha256 or ob.ip or ob.domain) else None
        found = [h for h in av if e.kind is EntityKind.FILE and ((e.sha256 and h.sha256 == e.sha256) or
                                                                 (e.path and h.path == e.path))]
        # A script an interpreter runs is started by what started the interpreter.
        persisted = starters.get(e.key, []) + [s for p in e.parents for s in starters.get(p, [])]
        signals = Signals(
            indicator_action=hit.action.value if hit else None, indicator_title=hit.indicator.title if hit else "",
            antivirus=tuple(h.threat for h in found if h.source != "yara"),
            yara=tuple(h.threat for h in found if h.source == "yara"),
            sigma=tuple(a.title for a in alerts if any(_mentions(dict(r), e) for r in a.evidence)),
            devices_seen=len(repo.devices_seeing("sha256", e.sha256)) if e.sha256 else 0, fleet_size=fleet,
            started_by_persistence=tuple(persisted) if e.kind is EntityKind.FILE else (),
        )
        out[e.key] = judge(e, signals)
    return judge_related(entities, out)


def _log(now: datetime, text: str) -> dict[str, str]:
    return {"time": now.isoformat(), "text": text}


def _run(uow: UnitOfWork, repo: AirRepository, now: datetime, actor: str, device: DeviceRecord,
         alert: AlertRecord | None, triggered_by: str, incident_id: int | None, parent_id: int | None) -> int:
    """Create, gather, judge and remediate one investigation in the caller's transaction; returns its id."""
    level = AutomationLevel(repo.group_level(device.group_id))
    inv_id = repo.create(NewInvestigation(device.id, triggered_by, actor, level.value,
                                          alert.id if alert else None, incident_id, parent_id), now)
    seed = Seed(device.id, alert.first_event_time - ALERT_WINDOW, alert.last_event_time + ALERT_WINDOW,
                tuple(dict(r) for r in alert.evidence)) if alert else Seed(device.id, now - DEVICE_WINDOW, now)
    log = [_log(now, f"started by {actor} ({triggered_by}); automation level {LABELS[level]}")]
    got = gather(repo, seed)
    log += [_log(now, line) for line in got.log]
    nearby = uow.alerts.query(AlertQuery(machine_id=device.id, since=seed.start - ALERT_WINDOW), None)
    verdicts = _judge(repo, list(nearby), device, got.entities, now)
    for r in propose(got.entities, verdicts):
        d = decision(level, r, verdicts[r.entity_key].verdict)
        action_type = ACTION_OF.get(r.kind)
        action_id, shown = None, d.value
        if action_type is None:
            shown = Outcome.UNSUPPORTED.value
        elif d is not RemediationDecision.NOT_RUN:
            try:
                params = validate_parameters(action_type, r.parameters)
            except ActionRuleError as e:
                log.append(_log(now, f"{r.kind} {r.target_path}: not issued, {e}"))
                continue
            action = uow.actions.issue(
                ActionRequest(device.id, action_type, params, f"Automated investigation {inv_id}: {r.why} "
                              f"{r.target_path}", d is RemediationDecision.NEEDS_APPROVAL),
                AuditRecord(ACTOR, "", "", ""), now)
            action_id = action.id
        repo.add_remediation(inv_id, RemediationRecord(r.kind.value, r.entity_key, device.id, r.target_path,
                                                       r.parameters, shown, r.why, action_id), now)
        log.append(_log(now, f"{r.kind} {r.target_path}: {shown}" + (f" (action {action_id})" if action_id else "")))
    exp: dict[str, Any] = {"state": "None", "devices": {}, "needsApproval": False}
    if triggered_by != "Expansion":
        exp = _expand(uow, repo, now, device, got.entities, verdicts, inv_id, incident_id, log)
    rec = repo.get(inv_id, None)
    assert rec is not None  # just created in this transaction
    repo.save(replace(rec, entities=tuple(_entity_json(e) for e in got.entities),
                      verdicts=tuple(_verdict_json(v) for v in verdicts.values()), log=tuple(log), expansion=exp), now)
    _refresh(uow, repo, inv_id, now)
    return inv_id


def _expand(uow: UnitOfWork, repo: AirRepository, now: datetime, device: DeviceRecord, entities: Iterable[Entity],
            verdicts: dict[str, EntityVerdict], inv_id: int, incident_id: int | None,
            log: list[dict[str, str]]) -> dict[str, Any]:
    sightings: dict[str, set[str]] = {}
    for e in entities:
        if verdicts[e.key].verdict is Verdict.CLEAN:
            continue
        for kind, value in (("sha256", e.sha256), ("ip", str(e.facts.get("ip") or "")),
                            ("domain", str(e.facts.get("domain") or ""))):
            if value and (kind != "sha256" or e.kind is EntityKind.FILE):
                sightings[f"{kind}:{value}"] = repo.devices_seeing(kind, value)
    ex = expansion(device.id, sightings)
    if not ex.device_ids:
        return {"state": "None", "devices": {}, "needsApproval": False}
    out = {"devices": {d: list(w) for d, w in ex.why.items()}, "needsApproval": ex.needs_approval,
           "state": "PendingApproval" if ex.needs_approval else "Expanded"}
    if ex.needs_approval:
        log.append(_log(now, f"expansion to {len(ex.device_ids)} devices waits for approval (10 or more)"))
    else:
        _start_children(uow, repo, now, ex.device_ids, inv_id, incident_id)
        log.append(_log(now, f"expanded to {len(ex.device_ids)} device(s)"))
    return out


def _start_children(uow: UnitOfWork, repo: AirRepository, now: datetime, device_ids: Iterable[str], inv_id: int,
                    incident_id: int | None) -> None:
    for other in device_ids:
        d = uow.devices.get(other)
        if d is not None and d.offboarded_at is None:
            _run(uow, repo, now, ACTOR, d, None, "Expansion", incident_id, inv_id)


def _outcome(r: RemediationRecord) -> Outcome:
    if r.action_id is None:
        return Outcome(r.decision) if r.decision in (Outcome.UNSUPPORTED, Outcome.NOT_RUN) else Outcome.NOT_RUN
    if r.action_approval == "PendingApproval":
        return Outcome.PENDING_APPROVAL
    if r.action_approval == "Rejected" or r.action_status == "Canceled":
        return Outcome.REJECTED
    if r.action_status == "Succeeded":
        return Outcome.UNDONE if r.undone else Outcome.SUCCEEDED
    if r.action_status in ("Failed", "TimeOut"):
        return Outcome.FAILED
    return Outcome.RUNNING


def outcome(r: RemediationRecord) -> str:
    return _outcome(r).value


_STICKY = (InvestigationState.TERMINATED_BY_USER.value, InvestigationState.BENIGN.value)


def _refresh(uow: UnitOfWork, repo: AirRepository, inv_id: int, now: datetime) -> InvestigationRecord:
    """Follow the remediations' actions to the investigation's state; a remediated alert resolves itself."""
    rec = repo.get(inv_id, None)
    assert rec is not None
    if rec.state in _STICKY:
        return rec
    outcomes = [_outcome(r) for r in repo.remediations(inv_id)]
    state = state_of([_verdict_of(v) for v in rec.verdicts], outcomes)
    if state.value == rec.state and rec.log:
        return rec
    details = {InvestigationState.TERMINATED_BY_SYSTEM: "threats found; no remediation ran (No automated "
               "response, or none could be issued): see the recommended actions"}.get(state, "")
    log = rec.log + ((_log(now, f"state: {state.label}"),) if state.value != rec.state else ())
    new = replace(rec, state=state.value, status_details=details, log=log,
                  end_time=now if state.finished else None)
    repo.save(new, now)
    if state is InvestigationState.REMEDIATED and rec.triggering_alert_id:
        _resolve_alert(uow, rec.triggering_alert_id, inv_id, now)
    return new


def _resolve_alert(uow: UnitOfWork, alert_id: str, inv_id: int, now: datetime) -> None:
    # An analyst who set the alert's status by hand keeps it: only a status AIR alone has touched moves.
    if any(n.kind == "History" and n.author != ACTOR and "status" in n.text.lower()
           for n in uow.alerts.notes(alert_id)):
        return
    alert = uow.alerts.get(alert_id, None)
    if alert is not None and alert.status != "Resolved":
        uow.alerts.update(alert_id, AlertUpdate(status="Resolved", comment=f"Remediated by automated investigation "
                                                f"{inv_id}"), ACTOR, now)


def start(store: Store, clock: Clock, who: Principal, machine_id: str, *, triggered_by: str = "Api",
          alert_id: str | None = None, incident_id: int | None = None, comment: str | None = None) -> Investigation:
    """Investigate one device (around ``alert_id`` when given) for a caller who may see it."""
    who.require(Permission.ALERTS_INVESTIGATION)
    if triggered_by not in TRIGGERS:
        raise InvalidInput(f"triggered_by must be one of {', '.join(TRIGGERS)}", field="triggeredBy")
    now = clock.now()
    with store.begin() as uow:
        device = visible(uow, who, machine_id)
        alert = None
        if alert_id is not None:
            alert = uow.alerts.get(alert_id, who.device_group_ids)
            if alert is None:
                raise NotFound(f"no alert with id {alert_id!r}", field="alertId")
            if alert.machine_id != device.id:
                raise InvalidInput(f"alert {alert_id} is on another machine", field="alertId")
        repo = air_repo(uow)
        inv_id = _run(uow, repo, now, who.actor, device, alert, triggered_by, incident_id, None)
        uow.audit.append(AuditRecord(who.actor, "investigation.start", "investigation", str(inv_id), after={
            "machineId": device.id, "triggeredBy": triggered_by, "alertId": alert_id, "incidentId": incident_id},
            reason=comment, source_ip=who.source_ip), now)
        return Investigation(_refresh(uow, repo, inv_id, now), tuple(repo.remediations(inv_id)))


def start_for_alert(store: Store, clock: Clock, who: Principal, alert_id: str) -> Investigation:
    with store.begin() as uow:
        alert = uow.alerts.get(alert_id, who.device_group_ids)
    if alert is None or not alert.machine_id:
        raise NotFound(f"no device alert with id {alert_id!r}", field="alertId")
    return start(store, clock, who, alert.machine_id, triggered_by="Alert", alert_id=alert_id)


def start_for_incident(store: Store, clock: Clock, who: Principal, incident_id: int) -> list[Investigation]:
    """One investigation per alert of the incident on a device the caller sees (alerts already investigated
    are left alone)."""
    with store.begin() as uow:
        if uow.incidents.get(incident_id, who.device_group_ids) is None:
            raise NotFound(f"no incident with id {incident_id}", field="incidentId")
        found = uow.alerts.query(AlertQuery(incident_id=incident_id), who.device_group_ids)
        done = {r.triggering_alert_id for r in air_repo(uow).listing(None)}
    return [start(store, clock, who, a.machine_id, triggered_by="Incident", alert_id=a.id, incident_id=incident_id)
            for a in found if a.machine_id and a.id not in done]


def get(store: Store, clock: Clock, who: Principal, investigation_id: int) -> Investigation:
    who.require(Permission.VIEW_DATA_SECOPS)
    with store.begin() as uow:
        repo = air_repo(uow)
        if repo.get(investigation_id, who.device_group_ids) is None:
            raise NotFound(f"no investigation with id {investigation_id}", field="id")
        return Investigation(_refresh(uow, repo, investigation_id, clock.now()),
                             tuple(repo.remediations(investigation_id)))


def listing(store: Store, clock: Clock, who: Principal, *, state: str | None = None, machine_id: str | None = None,
            alert_id: str | None = None, limit: int = 1000) -> list[InvestigationRecord]:
    who.require(Permission.VIEW_DATA_SECOPS)
    if state is not None and state not in {s.value for s in InvestigationState}:
        raise InvalidInput(f"state must be one of {', '.join(s.value for s in InvestigationState)}", field="state")
    with store.begin() as uow:
        repo = air_repo(uow)
        found = repo.listing(who.device_group_ids, None, machine_id, alert_id, limit)
        fresh = [_refresh(uow, repo, r.id, clock.now()) if r.state in ("Running", "PendingApproval") else r
                 for r in found]
    return [r for r in fresh if state is None or r.state == state]


def cancel(store: Store, clock: Clock, who: Principal, investigation_id: int, comment: str | None) -> Investigation:
    """Stop an investigation (Terminated by user); its issued actions stay in the action center as they are."""
    who.require(Permission.ALERTS_INVESTIGATION)
    now = clock.now()
    with store.begin() as uow:
        repo = air_repo(uow)
        rec = repo.get(investigation_id, who.device_group_ids)
        if rec is None:
            raise NotFound(f"no investigation with id {investigation_id}", field="id")
        if InvestigationState(rec.state).finished:
            raise InvalidInput(f"investigation {investigation_id} is already {rec.state}", field="state")
        new = replace(rec, state=InvestigationState.TERMINATED_BY_USER.value, cancelled_by=who.actor, end_time=now,
                      log=(*rec.log, _log(now, f"terminated by {who.actor}")))
        repo.save(new, now)
        uow.audit.append(AuditRecord(who.actor, "investigation.cancel", "investigation", str(investigation_id),
                                     before=rec.state, after=new.state, reason=comment, source_ip=who.source_ip), now)
        return Investigation(new, tuple(repo.remediations(investigation_id)))


def approve_expansion(store: Store, clock: Clock, who: Principal, investigation_id: int,
                      comment: str | None) -> Investigation:
    """Let an investigation reach the 10 or more devices where its entities are seen."""
    who.require(Permission.REMEDIATION_SECOPS)
    now = clock.now()
    with store.begin() as uow:
        repo = air_repo(uow)
        rec = repo.get(investigation_id, who.device_group_ids)
        if rec is None:
            raise NotFound(f"no investigation with id {investigation_id}", field="id")
        if rec.expansion.get("state") != "PendingApproval":
            raise InvalidInput(f"investigation {investigation_id} has no expansion waiting for approval",
                               field="expansion")
        devices = sorted(rec.expansion.get("devices", {}))
        _start_children(uow, repo, now, devices, investigation_id, rec.incident_id)
        new = replace(rec, expansion={**rec.expansion, "state": "Approved", "approvedBy": who.actor},
                      log=(*rec.log, _log(now, f"expansion to {len(devices)} devices approved by {who.actor}")))
        repo.save(new, now)
        uow.audit.append(AuditRecord(who.actor, "investigation.expansion.approve", "investigation",
                                     str(investigation_id), after={"devices": devices}, reason=comment,
                                     source_ip=who.source_ip), now)
        return Investigation(new, tuple(repo.remediations(investigation_id)))


def children(store: Store, who: Principal, investigation_id: int) -> list[InvestigationRecord]:
    who.require(Permission.VIEW_DATA_SECOPS)
    with store.begin() as uow:
        return [r for r in air_repo(uow).listing(who.device_group_ids, limit=10_000) if r.parent_id == investigation_id]


def sweep(store: Store, clock: Clock, severities: Sequence[str],
          lookback: timedelta = timedelta(days=1)) -> list[int]:
    """Start investigations for new alerts of ``severities`` and follow open ones; returns the ids started.

    The server runs it in the background; one alert's failure is logged in its own transaction, never stops the
    rest."""
    now = clock.now()
    with store.begin() as uow:
        repo = air_repo(uow)
        pending = list(repo.uninvestigated_alerts(severities, now - lookback)) if severities else []
        for inv_id in repo.open_investigations():
            _refresh(uow, repo, inv_id, now)
    started = []
    for alert_id in pending:
        try:
            started.append(start_for_alert(store, clock, SYSTEM, alert_id).record.id)
        except AppError as e:
            log.warning("automated investigation of alert %s not started: %s", alert_id, e.message)
    return started
