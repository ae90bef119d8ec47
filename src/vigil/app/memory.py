"""An in-memory store behind the same ports, for services' unit tests (like httpx's MockTransport).

Changes go to a copy that replaces the committed state only when the unit of work ends without raising,
so a refused operation leaves nothing behind here as it does in the database.
"""

from __future__ import annotations

import copy
import secrets
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from vigil.app.paging import Page, PageRequest, in_memory
from vigil.app.ports import (
    ActionRequest,
    AlertNote,
    AlertQuery,
    AlertRecord,
    AlertUpdate,
    ApiTokenRecord,
    AsrPolicyRecord,
    AuditRecord,
    AvPolicyRecord,
    DeviceRecord,
    IncidentRecord,
    IncidentUpdate,
    IndicatorRecord,
    IssuedToken,
    LoggedAudit,
    NewSuppression,
    PlanGate,
    RolloutPlan,
    SuppressionRecord,
    TagChange,
    UnitOfWork,
    UserAccess,
    UserSummary,
)
from vigil.asr import AsrPolicy
from vigil.asr.indicators import Indicator
from vigil.core.actions import COMMAND_LIFETIME, ActionStatus, Approval, MachineAction
from vigil.core.audit import GENESIS, AuditEntry, ChainReport, entry_hash, verify_chain
from vigil.core.devices import DEFAULT_GROUP_NAME
from vigil.core.groups import validate_tag
from vigil.core.incidents import IncidentStatus, entities_of, incident_name, max_severity
from vigil.core.names import match_name
from vigil.core.plan import Ring
from vigil.core.rbac import Permission
from vigil.core.suppression import parse_conditions
from vigil.store.errors import InvalidChange, NotFound

SEVERITY_RANK = {"Informational": 0, "Low": 1, "Medium": 2, "High": 3}


@dataclass
class MemoryState:
    """Everything the fake holds; tests seed it directly."""

    groups: dict[str, int] = field(default_factory=lambda: {DEFAULT_GROUP_NAME: 1})
    devices: dict[str, DeviceRecord] = field(default_factory=dict)
    audit: list[AuditRecord] = field(default_factory=list)
    # The same appends as the hash-chained log reads them back (seq, time, hash).
    audit_log: list[LoggedAudit] = field(default_factory=list)
    # Telemetry rows per table, each with its DeviceId and Timestamp.
    telemetry: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    tokens: list[IssuedToken] = field(default_factory=list)
    actions: list[MachineAction] = field(default_factory=list)
    plan: PlanGate | None = None
    # The plan as enabling components sees it, the exit criteria each ring fails, each step's outcome.
    rollout: RolloutPlan | None = None
    unmet: dict[Ring, tuple[str, ...]] = field(default_factory=dict)
    rollout_results: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    users: dict[str, UserAccess] = field(default_factory=dict)
    # Accounts as the user verbs manage them, and their passwords in clear (a fake: nothing here is hashed).
    accounts: dict[str, UserSummary] = field(default_factory=dict)
    passwords: dict[str, str] = field(default_factory=dict)
    alerts: dict[str, AlertRecord] = field(default_factory=dict)
    alert_notes: dict[str, list[AlertNote]] = field(default_factory=dict)
    incidents: dict[int, IncidentRecord] = field(default_factory=dict)
    suppression: dict[int, SuppressionRecord] = field(default_factory=dict)
    indicators: dict[int, IndicatorRecord] = field(default_factory=dict)
    asr_policies: dict[int | None, AsrPolicyRecord] = field(default_factory=dict)
    av_policies: dict[int | None, AvPolicyRecord] = field(default_factory=dict)
    api_tokens: dict[int, ApiTokenRecord] = field(default_factory=dict)
    # The fake keeps secrets in clear: nothing here is hashed.
    api_token_secrets: dict[str, int] = field(default_factory=dict)


class _Devices:
    def __init__(self, state: MemoryState) -> None:
        self._s = state

    def in_groups(self, group_ids: frozenset[int] | None) -> list[DeviceRecord]:
        rows = [d for d in self._s.devices.values() if group_ids is None or d.group_id in group_ids]
        return sorted(rows, key=lambda d: (d.computer_dns_name, d.id))

    def get(self, device_id: str) -> DeviceRecord | None:
        return self._s.devices.get(device_id)

    def page(self, group_ids: frozenset[int] | None, req: PageRequest) -> Page[DeviceRecord]:
        return in_memory(self.in_groups(group_ids), req, {
            "name": lambda d: d.computer_dns_name.lower(), "lastSeen": lambda d: d.last_seen,
            "group": lambda d: d.group_name.lower(), "firstSeen": lambda d: d.first_seen,
        }, lambda d: (d.computer_dns_name, d.id, d.last_ip, d.last_external_ip, d.group_name, d.os_platform, *d.tags),
            lambda d: d.id)

    def find(self, ref: str) -> list[DeviceRecord]:
        return [
            d
            for d in self._s.devices.values()
            if ref in (d.id, d.computer_dns_name) or (len(ref) >= 8 and d.id.startswith(ref))
        ]

    def offboard(self, device_id: str, now: datetime) -> bool:
        d = self._s.devices.get(device_id)
        if d is None or d.offboarded_at is not None:
            return False
        self._s.devices[device_id] = replace(d, offboarded_at=now)
        return True

    def group_id(self, name: str | None, now: datetime) -> int:
        key = match_name(name or DEFAULT_GROUP_NAME, self._s.groups) or ""  # "Ring - Pilot" is "Ring – Pilot"
        if key not in self._s.groups:
            raise NotFound(f"no device group named {name!r}")
        return self._s.groups[key]

    def set_tags(self, device_id: str, add: Sequence[str], remove: Sequence[str], now: datetime) -> TagChange:
        """The fake has no group rules and no agent tags: a tag change moves no device."""
        d = self._s.devices.get(device_id)
        if d is None:
            raise NotFound(f"no device {device_id!r}")
        gone = {validate_tag(t) for t in remove}
        after = [t for t in d.tags if t not in gone]
        after += [t for t in dict.fromkeys(validate_tag(t) for t in add) if t not in after]
        if after != list(d.tags):
            self._s.devices[device_id] = replace(d, tags=tuple(after))
        return TagChange(d.tags, tuple(after), ())


class _Audit:
    def __init__(self, state: MemoryState) -> None:
        self._s = state

    def append(self, record: AuditRecord, now: datetime) -> int:
        self._s.audit.append(record)
        log = self._s.audit_log
        entry = AuditEntry(
            seq=len(log) + 1, at=now, actor=record.actor, source_ip=record.source_ip, action=record.action,
            target_type=record.target_type, target_id=record.target_id, before=record.before, after=record.after,
            reason=record.reason, prev_hash=log[-1].hash if log else GENESIS,
        )
        log.append(LoggedAudit(entry, entry_hash(entry)))
        return len(self._s.audit)

    def entries(self, action: str | None = None) -> Sequence[AuditRecord]:
        return [r for r in self._s.audit if action is None or r.action == action]

    def log(self, action: str | None = None, limit: int | None = None) -> list[LoggedAudit]:
        rows = [e for e in reversed(self._s.audit_log) if not action or e.entry.action == action]
        return rows[:limit] if limit else rows

    def chain(self) -> Iterator[LoggedAudit]:
        return iter(list(self._s.audit_log))

    def page(self, action: str | None, req: PageRequest) -> Page[LoggedAudit]:
        def e(r: LoggedAudit) -> AuditEntry:
            return r.entry

        return in_memory(self.log(action), req, {
            "seq": lambda r: e(r).seq, "actor": lambda r: e(r).actor.lower(), "action": lambda r: e(r).action,
        }, lambda r: (e(r).actor, e(r).source_ip, e(r).action, e(r).target_type, e(r).target_id, e(r).reason),
            lambda r: e(r).seq)

    def verify(self) -> ChainReport:
        return verify_chain(((e.entry, e.hash) for e in self._s.audit_log), anchor=GENESIS)


class _Telemetry:
    def __init__(self, state: MemoryState) -> None:
        self._s = state

    def timeline(
        self, device_id: str, start: datetime | None, end: datetime | None, tables: Sequence[str] | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        out = [
            {**{k: v for k, v in row.items() if v is not None}, "Table": name}
            for name, rows in self._s.telemetry.items() if not tables or name in tables
            for row in rows
            if row["DeviceId"] == device_id and (start is None or row["Timestamp"] >= start)
            and (end is None or row["Timestamp"] < end)
        ]
        return sorted(out, key=lambda r: r["Timestamp"], reverse=True)[:limit]


class _Tokens:
    def __init__(self, state: MemoryState) -> None:
        self._s = state

    def issue(
        self, *, group: str | None, expires_at: datetime, max_uses: int, created_by: str, now: datetime
    ) -> IssuedToken:
        if max_uses < 1:
            raise ValueError("uses must be at least 1")
        if expires_at <= now:
            raise ValueError("expiry must be in the future")
        name = group or DEFAULT_GROUP_NAME
        if name not in self._s.groups:
            raise NotFound(f"no device group named {group!r}")
        token = IssuedToken("vge_" + secrets.token_urlsafe(32), len(self._s.tokens) + 1, name, expires_at, max_uses)
        self._s.tokens.append(token)
        return token


class _Plan:
    def __init__(self, state: MemoryState) -> None:
        self._s = state

    def gate(self) -> PlanGate | None:
        return self._s.plan

    def rollout(self) -> RolloutPlan | None:
        return self._s.rollout

    def unmet_criteria(self, ring: Ring, now: datetime) -> tuple[str, ...]:
        return self._s.unmet.get(ring, ())

    def save_rollout(self, ring: Ring, component: str, state: str, result: dict[str, Any], now: datetime) -> None:
        if self._s.rollout is None:
            raise NotFound("there is no plan")
        stored = {r: dict(v) for r, v in self._s.rollout.stored.items()}
        stored.setdefault(ring.value, {})[component] = state
        self._s.rollout = replace(self._s.rollout, stored=stored)
        self._s.rollout_results.setdefault(ring.value, {})[component] = result


class _Actions:
    """Records actions as the server's issuer does, without a signing key (the fake signs nothing)."""

    def __init__(self, state: MemoryState) -> None:
        self._s = state

    def issue(self, request: ActionRequest, who: AuditRecord, now: datetime) -> MachineAction:
        action = MachineAction(
            id=str(uuid.uuid4()),
            device_id=request.device_id,
            type=request.type,
            status=ActionStatus.PENDING,
            approval=Approval.PENDING if request.require_approval else Approval.NOT_REQUIRED,
            requestor=who.actor,
            comment=request.comment or "",
            parameters=request.parameters,
            created_at=now,
            updated_at=now,
            expires_at=now + COMMAND_LIFETIME[request.type],
        )
        self._s.actions.append(action)
        self._s.audit.append(
            replace(
                who,
                action="machineaction.create",
                target_type="machine_action",
                target_id=action.id,
                reason=action.comment,
            )
        )
        return action


class _Users:
    def __init__(self, state: MemoryState) -> None:
        self._s = state

    def access(self, username: str) -> UserAccess | None:
        found = self._s.accounts.get(username)
        return None if found is not None and found.disabled else self._s.users.get(username)

    def list_all(self) -> list[UserSummary]:
        return [self._s.accounts[k] for k in sorted(self._s.accounts)]

    def create(self, username: str, password: str, role: str, email: str | None, now: datetime
               ) -> UserSummary | None:
        if username in self._s.accounts:
            return None
        self._s.accounts[username] = UserSummary(username, role, email, "local", False)
        self._s.passwords[username] = password
        return self._s.accounts[username]

    def set_disabled(self, username: str, disabled: bool, now: datetime) -> UserSummary | None:
        if username not in self._s.accounts:
            return None
        self._s.accounts[username] = replace(self._s.accounts[username], disabled=disabled)
        return self._s.accounts[username]

    def set_password(self, username: str, password: str, now: datetime) -> UserSummary | None:
        if username not in self._s.accounts:
            return None
        self._s.passwords[username] = password
        return self._s.accounts[username]


class _Alerts:
    def __init__(self, state: MemoryState) -> None:
        self._s = state

    def _seen(self, a: AlertRecord, group_ids: frozenset[int] | None) -> bool:
        if group_ids is None:
            return True
        if a.machine_id is None:  # an identity alert: only for a caller who sees every device group
            return set(self._s.groups.values()) <= group_ids
        d = self._s.devices.get(a.machine_id)
        return d is not None and d.group_id in group_ids

    def query(self, q: AlertQuery, group_ids: frozenset[int] | None) -> list[AlertRecord]:
        rows = [
            a for a in self._s.alerts.values()
            if self._seen(a, group_ids)
            and (q.machine_id is None or a.machine_id == q.machine_id)
            and (q.status is None or a.status == q.status)
            and (q.severity is None or a.severity == q.severity)
            and (q.incident_id is None or a.incident_id == q.incident_id)
            and (q.since is None or a.alert_creation_time >= q.since)
        ]
        return sorted(rows, key=lambda a: a.alert_creation_time, reverse=True)[: q.limit]

    def page(self, q: AlertQuery, group_ids: frozenset[int] | None, req: PageRequest) -> Page[AlertRecord]:
        names = {d.id: d.computer_dns_name for d in self._s.devices.values()}
        return in_memory(self.query(replace(q, limit=len(self._s.alerts)), group_ids), req, {
            "lastActivity": lambda a: a.last_event_time, "severity": lambda a: SEVERITY_RANK.get(a.severity, -1),
            "title": lambda a: a.title.lower(), "status": lambda a: a.status, "events": lambda a: a.event_count,
            "created": lambda a: a.alert_creation_time,
        }, lambda a: (a.title, a.id, a.category, a.account_name, a.assigned_to, *a.mitre_techniques, a.machine_id,
                      names.get(a.machine_id or "")), lambda a: a.id)

    def get(self, alert_id: str, group_ids: frozenset[int] | None) -> AlertRecord | None:
        a = self._s.alerts.get(alert_id)
        return a if a is not None and self._seen(a, group_ids) else None

    def notes(self, alert_id: str) -> list[AlertNote]:
        return list(self._s.alert_notes.get(alert_id, []))

    def update(self, alert_id: str, change: AlertUpdate, who: str, now: datetime) -> bool:
        a = self._s.alerts.get(alert_id)
        if a is None:
            return False
        notes = self._s.alert_notes.setdefault(alert_id, [])
        values: dict[str, object] = {}
        for column in ("status", "assigned_to", "classification", "determination"):
            new, old = getattr(change, column), getattr(a, column)
            if new is not None and new != old:
                values[column] = new
                notes.append(AlertNote(f"{column.replace('_', ' ')}: {old or '—'} → {new}", who, now, "History"))
        if "status" in values:
            values["resolved_time"] = now if values["status"] == "Resolved" else None
        if change.comment:
            notes.append(AlertNote(change.comment, who, now, "Comment"))
        self._s.alerts[alert_id] = replace(a, last_update_time=now, **values)  # type: ignore[arg-type]
        return True


class _Incidents:
    """Incidents as the SQL store keeps them: recomputed from their alerts after a merge or split."""

    def __init__(self, state: MemoryState) -> None:
        self._s = state

    def _seen(self, incident_id: int, group_ids: frozenset[int] | None) -> bool:
        seen = _Alerts(self._s)._seen
        return group_ids is None or any(
            a.incident_id == incident_id and seen(a, group_ids) for a in self._s.alerts.values()
        )

    def listing(
        self, status: str | None, group_ids: frozenset[int] | None, limit: int = 1000
    ) -> list[IncidentRecord]:
        rows = [i for i in self._s.incidents.values()
                if i.status != IncidentStatus.REDIRECTED.value and (status is None or i.status == status)
                and self._seen(i.id, group_ids)]
        return sorted(rows, key=lambda i: i.last_activity, reverse=True)[:limit]

    def page(self, status: str | None, severity: str | None, group_ids: frozenset[int] | None,
             req: PageRequest) -> Page[IncidentRecord]:
        names = {d.id: d.computer_dns_name for d in self._s.devices.values()}
        rows = [i for i in self.listing(status, group_ids, len(self._s.incidents))
                if severity is None or i.severity == severity]
        return in_memory(rows, req, {
            "lastActivity": lambda i: i.last_activity, "severity": lambda i: SEVERITY_RANK.get(i.severity, -1),
            "name": lambda i: i.name.lower(), "status": lambda i: i.status, "created": lambda i: i.created_time,
        }, lambda i: (i.name, i.id, i.assigned_to, *i.device_ids, *(names.get(d) for d in i.device_ids)),
            lambda i: i.id)

    def get(self, incident_id: int, group_ids: frozenset[int] | None) -> IncidentRecord | None:
        i = self._s.incidents.get(incident_id)
        return i if i is not None and self._seen(incident_id, group_ids) else None

    def update(self, incident_id: int, change: IncidentUpdate, now: datetime) -> None:
        values = {k: v for k, v in vars(change).items() if v is not None}
        self._s.incidents[incident_id] = replace(self._s.incidents[incident_id], last_update_time=now, **values)

    def _refresh(self, incident_id: int, now: datetime) -> None:
        mine = [a for a in self._s.alerts.values() if a.incident_id == incident_id]
        i = self._s.incidents[incident_id]
        if not mine:
            self._s.incidents[incident_id] = replace(i, status=IncidentStatus.RESOLVED.value, last_update_time=now)
            return
        hosts = [d.computer_dns_name if (d := self._s.devices.get(a.machine_id)) else a.machine_id
                 for a in mine if a.machine_id]
        ents = set().union(*(entities_of(list(a.evidence)) for a in mine))
        self._s.incidents[incident_id] = replace(
            i, name=incident_name([a.category for a in mine], hosts, [a.detection_source for a in mine]),
            severity=max_severity(a.severity for a in mine),
            device_ids=tuple(sorted({a.machine_id for a in mine if a.machine_id})),
            entities=tuple(sorted((e.kind.value, e.value) for e in ents)),
            last_activity=max(a.last_event_time for a in mine), last_update_time=now,
        )

    def _move(self, alert_ids: set[str], incident_id: int) -> None:
        for aid in alert_ids:
            self._s.alerts[aid] = replace(self._s.alerts[aid], incident_id=incident_id)

    def merge(self, target: int, others: Sequence[int], now: datetime) -> None:
        missing = sorted({target, *others} - set(self._s.incidents))
        if missing:
            raise InvalidChange(f"no incident with id {missing[0]}")
        if target in others or not others:
            raise InvalidChange("name one or more other incidents to merge into this one")
        self._move({a.id for a in self._s.alerts.values() if a.incident_id in others}, target)
        for o in others:
            self._s.incidents[o] = replace(self._s.incidents[o], status=IncidentStatus.REDIRECTED.value,
                                           redirect_incident_id=target, last_update_time=now)
        self._refresh(target, now)

    def split(self, source: int, alert_ids: Sequence[str], now: datetime) -> int:
        owned = {a for a in alert_ids if (x := self._s.alerts.get(a)) is not None and x.incident_id == source}
        stray = sorted(set(alert_ids) - owned)
        if stray:
            raise InvalidChange(f"alert {stray[0]} is not in incident {source}")
        total = sum(1 for a in self._s.alerts.values() if a.incident_id == source)
        if not alert_ids or len(owned) == total:
            raise InvalidChange("a split must leave at least one alert in each incident")
        new_id = max(self._s.incidents, default=0) + 1
        self._s.incidents[new_id] = IncidentRecord(new_id, "Incident", IncidentStatus.ACTIVE.value, "Informational",
                                                   None, None, None, now, now, now, (), ())
        self._move(owned, new_id)
        self._refresh(source, now)
        self._refresh(new_id, now)
        return new_id


class _Suppression:
    def __init__(self, state: MemoryState) -> None:
        self._s = state

    def listing(self) -> list[SuppressionRecord]:
        return [self._s.suppression[i] for i in sorted(self._s.suppression)]

    def create(self, rule: NewSuppression, now: datetime) -> int:
        parse_conditions(rule.conditions)  # refused before it is stored, as by the SQL store
        rule_id = max(self._s.suppression, default=0) + 1
        self._s.suppression[rule_id] = SuppressionRecord(
            rule_id, rule.alert_title, rule.scope, rule.action, dict(rule.conditions), rule.machine_id, True,
            rule.comment, rule.created_by, now, 0,
        )
        return rule_id

    def set_enabled(self, rule_id: int, enabled: bool) -> bool:
        if rule_id not in self._s.suppression:
            return False
        self._s.suppression[rule_id] = replace(self._s.suppression[rule_id], enabled=enabled)
        return True

    def delete(self, rule_id: int) -> bool:
        return self._s.suppression.pop(rule_id, None) is not None


class _Asr:
    def __init__(self, state: MemoryState) -> None:
        self._s = state

    def indicators(self) -> list[IndicatorRecord]:
        return [self._s.indicators[i] for i in sorted(self._s.indicators)]

    def save_indicator(self, indicator: Indicator, who: str, now: datetime) -> tuple[int, bool]:
        same = next((r for r in self._s.indicators.values() if (r.indicator.indicator_type,
                     r.indicator.indicator_value) == (indicator.indicator_type, indicator.indicator_value)), None)
        if same is not None:
            ind_id = int(same.indicator.id or 0)
            self._s.indicators[ind_id] = replace(same, indicator=replace(indicator, id=ind_id), last_updated_by=who,
                                                 last_update_time=now)
            return ind_id, False
        ind_id = max(self._s.indicators, default=0) + 1
        self._s.indicators[ind_id] = IndicatorRecord(replace(indicator, id=ind_id), who, now, who, now)
        return ind_id, True

    def delete_indicator(self, indicator_id: int) -> bool:
        return self._s.indicators.pop(indicator_id, None) is not None

    def group_names(self) -> dict[int, str]:
        return {gid: name for name, gid in self._s.groups.items()}

    def policies(self) -> list[AsrPolicyRecord]:
        return sorted(self._s.asr_policies.values(), key=lambda p: -1 if p.group_id is None else p.group_id)

    def save_policy(self, group_id: int | None, policy: AsrPolicy, who: str, now: datetime) -> int:
        before = self._s.asr_policies.get(group_id)
        version = before.version + 1 if before else 1
        self._s.asr_policies[group_id] = AsrPolicyRecord(group_id, policy, who, now, version)
        return version

    def delete_policy(self, group_id: int | None) -> bool:
        return self._s.asr_policies.pop(group_id, None) is not None


class _Av:
    def __init__(self, state: MemoryState) -> None:
        self._s = state

    def policies(self) -> list[AvPolicyRecord]:
        return sorted(self._s.av_policies.values(), key=lambda p: -1 if p.group_id is None else p.group_id)

    def save_policy(self, group_id: int | None, policy: dict[str, Any], who: str, now: datetime) -> int:
        before = self._s.av_policies.get(group_id)
        version = before.version + 1 if before else 1
        self._s.av_policies[group_id] = AvPolicyRecord(group_id, dict(policy), who, now, version)
        return version


class _ApiTokens:
    def __init__(self, state: MemoryState) -> None:
        self._s = state

    def listing(self, owner: str | None = None) -> list[ApiTokenRecord]:
        return [t for _, t in sorted(self._s.api_tokens.items()) if owner is None or t.owner == owner]

    def create(self, owner: str, name: str, scopes: frozenset[Permission], expires_at: datetime, now: datetime
               ) -> tuple[ApiTokenRecord, str] | None:
        if owner not in self._s.accounts and owner not in self._s.users:
            return None
        token_id = max(self._s.api_tokens, default=0) + 1
        self._s.api_tokens[token_id] = ApiTokenRecord(token_id, name, owner, scopes, now, expires_at, False)
        secret = f"vgt_memory{token_id}"
        self._s.api_token_secrets[secret] = token_id
        return self._s.api_tokens[token_id], secret

    def revoke(self, token_id: int, now: datetime, owner: str | None = None) -> bool:
        t = self._s.api_tokens.get(token_id)
        if t is None or t.revoked or (owner is not None and t.owner != owner):
            return False
        self._s.api_tokens[token_id] = replace(t, revoked=True)
        return True


@dataclass
class MemoryUnitOfWork:
    devices: _Devices
    audit: _Audit
    enrollment: _Tokens
    plan: _Plan
    actions: _Actions
    users: _Users
    alerts: _Alerts
    incidents: _Incidents
    suppression: _Suppression
    telemetry: _Telemetry
    asr: _Asr
    av: _Av
    api_tokens: _ApiTokens


class MemoryStore:
    """The fake store: ``state`` is what has been committed."""

    def __init__(self, state: MemoryState | None = None) -> None:
        self.state = state or MemoryState()

    @contextmanager
    def begin(self) -> Iterator[UnitOfWork]:
        work = copy.deepcopy(self.state)
        yield MemoryUnitOfWork(
            _Devices(work), _Audit(work), _Tokens(work), _Plan(work), _Actions(work), _Users(work), _Alerts(work),
            _Incidents(work), _Suppression(work), _Telemetry(work),
            _Asr(work), _Av(work), _ApiTokens(work),
        )
        self.state = work
