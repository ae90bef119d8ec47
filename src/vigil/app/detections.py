"""Custom detection rules: create, change and delete them (Manage security settings, audited), and run them on
their schedule over the telemetry, within the device groups of the user who made them.

A run is a hunting query (``vigil.app.hunting``'s checks and runner) limited to the rule's lookback; each new
(DeviceId, ReportId) of its results raises (or joins) an alert with the rule's fields. A rule that fails
``MAX_FAILURES`` runs in a row is switched off, and an alert tells the administrators: never silently. The rule's
automatic actions then run on the devices of the new hits (``vigil.app.detection_actions``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from vigil.app import detection_actions
from vigil.app.detection_actions import ActionOutcome
from vigil.app.errors import InvalidInput, NotFound
from vigil.app.hunting import MAX_ROWS, TIMEOUT_S, HuntRunner, QueryFailed, QueryTimeout, normal
from vigil.app.ports import AuditRecord, Store
from vigil.app.principal import Principal
from vigil.core.clock import Clock
from vigil.core.rbac import Permission
from vigil.hunt.detections import MAX_FAILURES, DetectionError, Hit, RuleFields, due, hits_of, query_sql
from vigil.hunt.sql import HuntError, Scope, check, column_type


@dataclass(frozen=True)
class Detection:
    id: int
    fields: RuleFields
    device_group_ids: frozenset[int] | None
    created_by: str
    created_at: datetime
    last_modified_by: str
    last_modified_at: datetime
    last_run_at: datetime | None = None
    last_run_status: str | None = None
    last_failure_reason: str | None = None
    consecutive_failures: int = 0

    @property
    def rule_id(self) -> str:
        """The detector id its alerts carry."""
        return f"vigil-custom-{self.id}"


@dataclass(frozen=True)
class RunSummary:
    detection_id: int
    status: str  # completed or failed
    rows: int
    new_hits: int
    duration_ms: float
    error: str | None = None
    disabled: bool = False
    actions: tuple[ActionOutcome, ...] = ()


class DetectionRepository(Protocol):
    def listing(self) -> list[Detection]: ...

    def get(self, detection_id: int) -> Detection | None: ...

    def by_name(self, name: str) -> Detection | None: ...

    def create(self, fields: RuleFields, groups: frozenset[int] | None, who: str, now: datetime) -> int: ...

    def update(self, detection_id: int, fields: RuleFields, groups: frozenset[int] | None, who: str,
               now: datetime) -> None: ...

    def delete(self, detection_id: int) -> bool: ...

    def record_run(self, detection_id: int, run: RunSummary, started: datetime, failures: int) -> None:
        """Store the run and the rule's last-run facts; ``run.disabled`` switches the rule off."""
        ...

    def store_hits(self, detection: Detection, hits: Sequence[Hit], now: datetime) -> list[tuple[Hit, str]]:
        """Raise an alert for each hit not seen before for this rule; returns the new hits with their alert ids."""
        ...

    def failure_alert(self, detection: Detection, reason: str, now: datetime) -> None: ...

    def runs(self, detection_id: int, limit: int = 20) -> list[dict[str, Any]]: ...


def _checked(fields: RuleFields, scope: frozenset[int] | None, dialect: str, now: datetime) -> str:
    try:
        return check(query_sql(fields.query_text, fields.period, now, dialect), Scope(scope), dialect,
                     MAX_ROWS).sql
    except HuntError as e:
        raise InvalidInput(str(e), field="queryCondition.queryText") from None


def _narrow(a: frozenset[int] | None, b: frozenset[int] | None) -> frozenset[int] | None:
    if a is None:
        return b
    return a if b is None else a & b


def _audit(store: Store, who: Principal, action: str, target: int, now: datetime, **kw: Any) -> None:
    with store.begin() as uow:
        uow.audit.append(AuditRecord(who.actor, action, "custom_detection", str(target), source_ip=who.source_ip,
                                     **kw), now)


def _facts(f: RuleFields) -> dict[str, Any]:
    return {"displayName": f.display_name, "queryText": f.query_text[:4000], "period": f.period,
            "isEnabled": f.enabled, "title": f.title, "severity": f.severity, "category": f.category,
            "mitreTechniques": list(f.techniques), "responseActions": list(f.response_actions)}


def list_detections(repo: DetectionRepository, who: Principal) -> list[Detection]:
    who.require(Permission.VIEW_DATA_SECOPS)
    return repo.listing()


def get_detection(repo: DetectionRepository, who: Principal, detection_id: int) -> Detection:
    who.require(Permission.VIEW_DATA_SECOPS)
    return _found(repo, detection_id)


def detection_to_change(repo: DetectionRepository, who: Principal, detection_id: int) -> Detection:
    """The rule as stored, for a caller about to change it (a PATCH merges onto it)."""
    who.require(Permission.MANAGE_SECURITY_SETTINGS)
    return _found(repo, detection_id)


def _found(repo: DetectionRepository, detection_id: int) -> Detection:
    # No permission of its own: the changing verbs check Manage security settings, which does not imply View data.
    d = repo.get(detection_id)
    if d is None:
        raise NotFound(f"no custom detection rule with id {detection_id}", field="id")
    return d


def create_detection(store: Store, repo: DetectionRepository, runner: HuntRunner, clock: Clock, who: Principal,
                     fields: RuleFields) -> Detection:
    """A new rule seeing the creator's device groups; its query is checked now, not at its first run."""
    who.require(Permission.MANAGE_SECURITY_SETTINGS)
    detection_actions.require(who, fields.response_actions)
    now = clock.now()
    _checked(fields, who.device_group_ids, runner.dialect, now)
    if repo.by_name(fields.display_name) is not None:
        raise InvalidInput(f"a custom detection rule named {fields.display_name!r} exists", field="displayName")
    new_id = repo.create(fields, who.device_group_ids, who.username or who.actor, now)
    _audit(store, who, "detection.create", new_id, now, after=_facts(fields))
    return _found(repo, new_id)


def update_detection(store: Store, repo: DetectionRepository, runner: HuntRunner, clock: Clock, who: Principal,
                     detection_id: int, fields: RuleFields) -> Detection:
    """Change a rule; it then sees no more than both its maker and this editor may see."""
    who.require(Permission.MANAGE_SECURITY_SETTINGS)
    detection_actions.require(who, fields.response_actions)
    old = _found(repo, detection_id)
    now = clock.now()
    groups = _narrow(old.device_group_ids, who.device_group_ids)
    _checked(fields, groups, runner.dialect, now)
    other = repo.by_name(fields.display_name)
    if other is not None and other.id != detection_id:
        raise InvalidInput(f"a custom detection rule named {fields.display_name!r} exists", field="displayName")
    repo.update(detection_id, fields, groups, who.username or who.actor, now)
    _audit(store, who, "detection.update", detection_id, now, before=_facts(old.fields), after=_facts(fields))
    return _found(repo, detection_id)


def delete_detection(store: Store, repo: DetectionRepository, clock: Clock, who: Principal, detection_id: int) -> None:
    who.require(Permission.MANAGE_SECURITY_SETTINGS)
    old = _found(repo, detection_id)
    repo.delete(detection_id)
    _audit(store, who, "detection.delete", detection_id, clock.now(), before=_facts(old.fields))


def run_detection(repo: DetectionRepository, runner: HuntRunner, clock: Clock, d: Detection,
                  store: Store | None = None) -> RunSummary:
    """One run now: the query over the lookback, new hits raised as alerts, the rule's automatic actions run on
    them through ``store`` (the server's, with its signing path), the run recorded."""
    now = clock.now()
    started = time.perf_counter()
    rows, new, error = 0, [], None
    try:
        sql = _checked(d.fields, d.device_group_ids, runner.dialect, now)
        names, raw = runner.run(sql, TIMEOUT_S)
        types = [column_type(n) for n in names]
        results = [{n: normal(v, t) for n, v, t in zip(names, r, types, strict=True)} for r in raw]
        rows = len(results)
        new = repo.store_hits(d, hits_of(results, names), now)
    except InvalidInput as e:
        error = e.message
    except DetectionError as e:
        error = str(e)
    except QueryTimeout:
        error = f"the query ran longer than its {TIMEOUT_S:g} s quota"
    except QueryFailed as e:
        error = f"the database refused the query: {e}"
    done: list[ActionOutcome] = []
    if new and d.fields.response_actions:
        if store is None:
            per_device = {h.device_id: alert for h, alert in reversed(new)}
            done = [ActionOutcome(a, dev, alert, error="this run has no response-action path (store)")
                    for a in d.fields.response_actions for dev, alert in per_device.items()]
        else:
            done = detection_actions.run(store, clock, d, d.fields.response_actions, d.fields.title, new)
    failures = 0 if error is None else d.consecutive_failures + 1
    run = RunSummary(d.id, "completed" if error is None else "failed", rows, len(new),
                     round((time.perf_counter() - started) * 1000, 3), error,
                     disabled=error is not None and failures >= MAX_FAILURES, actions=tuple(done))
    repo.record_run(d.id, run, now, failures)
    if run.disabled:
        repo.failure_alert(d, error or "", now)
    return run


def run_now(repo: DetectionRepository, runner: HuntRunner, clock: Clock, who: Principal,
            detection_id: int, store: Store | None = None) -> RunSummary:
    who.require(Permission.MANAGE_SECURITY_SETTINGS)
    return run_detection(repo, runner, clock, _found(repo, detection_id), store)


def run_due(repo: DetectionRepository, runner: HuntRunner, clock: Clock,
            store: Store | None = None) -> list[RunSummary]:
    """Every enabled rule whose period has passed since its last run (the server's scheduler calls this)."""
    now = clock.now()
    return [run_detection(repo, runner, clock, d, store) for d in repo.listing()
            if d.fields.enabled and due(d.fields.period, d.last_run_at, now)]
