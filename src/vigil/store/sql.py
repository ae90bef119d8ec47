"""The store ports (``vigil.app.ports``) on SQLAlchemy: one connection and transaction per unit of work."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import yaml

from vigil.app.paging import Page, PageRequest
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
from vigil.core.actions import MachineAction
from vigil.core.alerts import AlertStatus, Classification, Determination
from vigil.core.audit import ChainReport
from vigil.core.plan import Ring, plan_from_dict, signoff_status
from vigil.core.rbac import BasicRole, Permission
from vigil.core.suppression import SuppressionAction, SuppressionScope
from vigil.store import alerts as alert_store
from vigil.store import audit, paging, plans, rbac, sessions, users
from vigil.store import av as av_store
from vigil.store import devices as device_store
from vigil.store import groups as group_store
from vigil.store import incidents as incident_store
from vigil.store import indicators as indicator_store
from vigil.store import suppression as suppression_store
from vigil.store import telemetry as telemetry_store
from vigil.store.errors import NotConfiguredIssuer, NotFound
from vigil.store.hunt import SqlHuntRunner
from vigil.store.schema import alerts, audit_log, device_groups, devices, incidents
from vigil.store.schema import users as users_table
from vigil.store.sessions import close_user_sessions
from vigil.store.tenant import get_setting, set_setting

# The server's signing path (server/actions.py) given a connection: the store records, the server signs.
ActionIssuerFn = Callable[[sa.Connection, ActionRequest, AuditRecord, datetime], MachineAction]


def _device(row: Any) -> DeviceRecord:
    return DeviceRecord(
        id=row.id,
        computer_dns_name=row.computer_dns_name,
        os_platform=row.os_platform,
        os_version=row.os_version,
        os_build=row.os_build or None,
        agent_version=row.agent_version,
        group_id=int(row.group_id),
        group_name=row.group_name,
        first_seen=device_store.aware(row.first_seen),
        last_seen=device_store.aware(row.last_seen),
        last_ip=row.last_ip,
        last_external_ip=row.last_external_ip,
        tags=device_store.all_tags(row.tags, row.agent_tags),
        offboarded_at=device_store.aware(row.offboarded_at) if row.offboarded_at else None,
        sensors=dict(row.sensors or {}),
        counters=dict(row.counters or {}),
    )


_WITH_GROUP = sa.select(devices, device_groups.c.name.label("group_name")).join(
    device_groups, device_groups.c.id == devices.c.group_id
)


class SqlDevices:
    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def in_groups(self, group_ids: frozenset[int] | None) -> list[DeviceRecord]:
        q = _WITH_GROUP if group_ids is None else _WITH_GROUP.where(devices.c.group_id.in_(sorted(group_ids)))
        return [_device(r) for r in self._c.execute(q.order_by(devices.c.computer_dns_name, devices.c.id))]

    def get(self, device_id: str) -> DeviceRecord | None:
        row = self._c.execute(_WITH_GROUP.where(devices.c.id == device_id)).first()
        return _device(row) if row else None

    def page(self, group_ids: frozenset[int] | None, req: PageRequest) -> Page[DeviceRecord]:
        q = _WITH_GROUP if group_ids is None else _WITH_GROUP.where(devices.c.group_id.in_(sorted(group_ids)))
        rows, total = paging.page_rows(self._c, q, req, paging.DEVICE_SORTS, paging.DEVICE_FIELDS, devices.c.id)
        return Page(tuple(_device(r) for r in rows), total)

    def find(self, ref: str) -> list[DeviceRecord]:
        ids = [r.id for r in device_store.find_devices(self._c, ref)]
        return [_device(r) for r in self._c.execute(_WITH_GROUP.where(devices.c.id.in_(ids)))] if ids else []

    def offboard(self, device_id: str, now: datetime) -> bool:
        return device_store.offboard_device(self._c, device_id, now)

    def group_id(self, name: str | None, now: datetime) -> int:
        return device_store.group_id_by_name(self._c, name, now)

    def set_tags(self, device_id: str, add: Sequence[str], remove: Sequence[str], now: datetime) -> TagChange:
        try:
            before, after = group_store.set_tags(self._c, device_id, list(add), list(remove))
        except LookupError:
            raise NotFound(f"no device {device_id!r}") from None
        if before == after:
            return TagChange(tuple(before), tuple(after), ())
        # Not touch_device: an analyst's tag says nothing about when the device was last seen.
        self._c.execute(devices.update().where(devices.c.id == device_id).values(tags=after))
        return TagChange(tuple(before), tuple(after), tuple(device_store.reassign_devices(self._c, [device_id])))


class SqlAudit:
    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def append(self, record: AuditRecord, now: datetime) -> int:
        return audit.append(
            self._c,
            audit.Change(
                record.actor,
                record.action,
                record.target_type,
                record.target_id,
                before=record.before,
                after=record.after,
                reason=record.reason,
                source_ip=record.source_ip,
            ),
            now,
        ).seq

    def entries(self, action: str | None = None) -> Sequence[AuditRecord]:
        return [
            AuditRecord(e.actor, e.action, e.target_type, e.target_id, e.before, e.after, e.reason, e.source_ip)
            for e, _ in audit.entries(self._c, action=action)
        ]

    def log(self, action: str | None = None, limit: int | None = None) -> list[LoggedAudit]:
        return [LoggedAudit(e, h) for e, h in audit.entries(self._c, action=action, limit=limit, newest_first=True)]

    def page(self, action: str | None, req: PageRequest) -> Page[LoggedAudit]:
        q = sa.select(audit_log) if not action else sa.select(audit_log).where(audit_log.c.action == action)
        rows, total = paging.page_rows(self._c, q, req, paging.AUDIT_SORTS, paging.AUDIT_FIELDS, audit_log.c.seq)
        return Page(tuple(LoggedAudit(audit.entry_of(r), r.hash) for r in rows), total)

    def chain(self) -> Iterator[LoggedAudit]:
        return (LoggedAudit(e, h) for e, h in audit.iter_all(self._c))

    def verify(self) -> ChainReport:
        return audit.verify(self._c)


class SqlTelemetry:
    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def timeline(
        self, device_id: str, start: datetime | None, end: datetime | None, tables: Sequence[str] | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        rows = telemetry_store.timeline(self._c, device_id, start, end, list(tables) if tables else None, limit)
        # SQLite hands back naive times; the port's times are UTC-aware on every backend.
        return [{k: device_store.aware(v) if isinstance(v, datetime) else v for k, v in r.items()} for r in rows]


class SqlTokens:
    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def issue(
        self, *, group: str | None, expires_at: datetime, max_uses: int, created_by: str, now: datetime
    ) -> IssuedToken:
        t = device_store.issue_token(
            self._c, group=group, expires_at=expires_at, max_uses=max_uses, created_by=created_by, now=now
        )
        return IssuedToken(t.token, t.token_id, t.group, t.expires_at, t.max_uses)


class SqlPlan:
    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def gate(self) -> PlanGate | None:
        stored = plans.current_plan(self._c)
        if stored is None:
            return None
        # Stored documents were validated when saved, so this parse does not fail on a live install.
        plan = plan_from_dict(yaml.safe_load(stored.document))
        sigs = [(s.version, s.digest, s.email) for s in plans.signoffs(self._c, stored.version)]
        status = signoff_status(plan, stored.version, stored.digest, sigs)
        rings = {ring: group for ring in Ring if (group := plan.ring_group(ring)) is not None}
        return PlanGate(stored.version, not status.missing, status.missing, rings)

    # The plan's state and criteria are read by vigil.deploy.plan (it imports this package): imported late.
    def rollout(self) -> RolloutPlan | None:
        from vigil.deploy import plan as deployment

        st = deployment.state(self._c)
        if st is None:
            return None
        groups = {ring: device_store.stored_group_name(self._c, name) for ring in Ring
                  if (name := st.plan.ring_group(ring)) is not None}
        stored = get_setting(self._c, deployment.RING_COMPONENTS_KEY, {})
        return RolloutPlan(st.version, st.plan, st.gate_open, st.ring, stored if isinstance(stored, dict) else {},
                           groups)

    def unmet_criteria(self, ring: Ring, now: datetime) -> tuple[str, ...]:
        from vigil.deploy import plan as deployment

        st = deployment.state(self._c)
        if st is None:
            return ()
        return tuple(f"{c.name} ({c.value}, target {c.target})"
                     for c in deployment.ring_criteria(self._c, st, now, ring) if not c.met)

    def save_rollout(self, ring: Ring, component: str, state: str, result: dict[str, Any], now: datetime) -> None:
        from vigil.deploy import plan as deployment

        for key, value in ((deployment.RING_COMPONENTS_KEY, state), (deployment.RING_RESULTS_KEY, result)):
            stored = get_setting(self._c, key, {})
            table = {r: dict(v) for r, v in stored.items()} if isinstance(stored, dict) else {}
            table.setdefault(ring.value, {})[component] = value
            set_setting(self._c, key, table, now)


class SqlActions:
    def __init__(self, conn: sa.Connection, issue: ActionIssuerFn | None) -> None:
        self._c, self._issue = conn, issue

    def issue(self, request: ActionRequest, who: AuditRecord, now: datetime) -> MachineAction:
        if self._issue is None:
            raise NotConfiguredIssuer("this store was opened without the server's action signer")
        return self._issue(self._c, request, who, now)


class SqlUsers:
    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def access(self, username: str) -> UserAccess | None:
        user = users.get_user_by_name(self._c, username)
        if user is None:
            return None
        a = rbac.access_for(self._c, user)
        is_admin = a.device_group_ids is None and a.permissions == frozenset(Permission)
        return UserAccess(user.username, a.permissions, a.device_group_ids, is_admin)

    def _summary(self, user: users.User, disabled: bool) -> UserSummary:
        return UserSummary(user.username, user.role.value, user.email, user.source, disabled,
                           tuple(rbac.user_group_names(self._c, user.id)))

    def _find(self, username: str) -> tuple[users.User, bool] | None:
        return users.find_user(self._c, username)

    def list_all(self) -> list[UserSummary]:
        return [self._summary(u, off) for u, off in users.list_users(self._c)]

    def create(self, username: str, password: str, role: str, email: str | None, now: datetime
               ) -> UserSummary | None:
        try:
            made = users.create_user(self._c, username, password, BasicRole(role), now, email=email)
        except users.UserExists:
            return None
        return self._summary(made, False)

    def set_disabled(self, username: str, disabled: bool, now: datetime) -> UserSummary | None:
        found = self._find(username)
        if found is None:
            return None
        users.update_user(self._c, found[0].id, disabled=disabled)
        if disabled:
            close_user_sessions(self._c, found[0].id, now)
        return self._summary(found[0], disabled)

    def set_password(self, username: str, password: str, now: datetime) -> UserSummary | None:
        found = self._find(username)
        if found is None:
            return None
        users.set_password(self._c, found[0].id, password, now)
        close_user_sessions(self._c, found[0].id, now)
        return self._summary(*found)


def _alert(row: Any) -> AlertRecord:
    aware = device_store.aware
    return AlertRecord(
        id=row.id, machine_id=row.machine_id, incident_id=row.incident_id, title=row.title,
        description=row.description, severity=row.severity, category=row.category, status=row.status,
        classification=row.classification, determination=row.determination,
        investigation_state=row.investigation_state, detection_source=row.detection_source, rule_id=row.rule_id,
        mitre_techniques=tuple(row.mitre_techniques or ()), assigned_to=row.assigned_to,
        alert_creation_time=aware(row.alert_creation_time), first_event_time=aware(row.first_event_time),
        last_event_time=aware(row.last_event_time), last_update_time=aware(row.last_update_time),
        resolved_time=aware(row.resolved_time) if row.resolved_time else None, event_count=int(row.event_count),
        evidence=tuple(row.evidence or ()), account_name=row.account_name,
    )


def _in_groups(group_ids: frozenset[int] | None) -> sa.ColumnElement[bool] | None:
    if group_ids is None:
        return None
    ids = sorted(group_ids)
    on_device = alerts.c.machine_id.in_(sa.select(devices.c.id).where(devices.c.group_id.in_(ids)))
    # An identity alert (no device) is in no device group: only a caller who sees every device group sees it.
    tenant_wide = ~sa.exists().where(device_groups.c.id.not_in(ids))
    return sa.or_(on_device, sa.and_(alerts.c.machine_id.is_(None), tenant_wide))


class SqlAlerts:
    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def query(self, q: AlertQuery, group_ids: frozenset[int] | None) -> list[AlertRecord]:
        rows = alert_store.list_alerts(
            self._c, machine_id=q.machine_id, status=q.status, severity=q.severity, since=q.since, limit=q.limit,
            incident_id=q.incident_id, scope=_in_groups(group_ids),
        )
        return [_alert(r) for r in rows]

    def page(self, q: AlertQuery, group_ids: frozenset[int] | None, req: PageRequest) -> Page[AlertRecord]:
        rows, total = paging.page_rows(self._c, alert_store.alert_query(
            machine_id=q.machine_id, status=q.status, severity=q.severity, since=q.since, incident_id=q.incident_id,
            scope=_in_groups(group_ids)), req, paging.ALERT_SORTS, paging.ALERT_FIELDS, alerts.c.id)
        return Page(tuple(_alert(r) for r in rows), total)

    def get(self, alert_id: str, group_ids: frozenset[int] | None) -> AlertRecord | None:
        row = alert_store.get_alert(self._c, alert_id, _in_groups(group_ids))
        return _alert(row) if row is not None else None

    def notes(self, alert_id: str) -> list[AlertNote]:
        return [
            AlertNote(c.text, c.author, device_store.aware(c.created_at), c.kind)
            for c in alert_store.comments(self._c, alert_id)
        ]

    def update(self, alert_id: str, change: AlertUpdate, who: str, now: datetime) -> bool:
        return alert_store.update_alert(self._c, alert_id, alert_store.AlertChange(
            status=AlertStatus(change.status) if change.status else None, assigned_to=change.assigned_to,
            classification=Classification(change.classification) if change.classification else None,
            determination=Determination(change.determination) if change.determination else None,
            comment=change.comment,
        ), who, now)


def _incident(row: Any) -> IncidentRecord:
    aware = device_store.aware
    return IncidentRecord(
        id=int(row.id), name=row.name, status=row.status, severity=row.severity, assigned_to=row.assigned_to,
        classification=row.classification, determination=row.determination,
        created_time=aware(row.created_time), last_update_time=aware(row.last_update_time),
        last_activity=aware(row.last_activity), device_ids=tuple(row.device_ids or ()),
        entities=tuple((str(k), str(v)) for k, v in row.entities or ()),
        redirect_incident_id=row.redirect_incident_id,
    )


class SqlIncidents:
    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def listing(
        self, status: str | None, group_ids: frozenset[int] | None, limit: int = 1000
    ) -> list[IncidentRecord]:
        rows = incident_store.listing(self._c, status=status, limit=limit, scope=_in_groups(group_ids))
        return [_incident(r) for r in rows]

    def page(self, status: str | None, severity: str | None, group_ids: frozenset[int] | None,
             req: PageRequest) -> Page[IncidentRecord]:
        q = paging.incident_query(status, severity).where(incident_store.visible(_in_groups(group_ids)))
        q = paging.incident_search(q, req.words)
        rows, total = paging.page_rows(self._c, q, replace(req, words=()), paging.INCIDENT_SORTS, (),
                                       incidents.c.id)
        return Page(tuple(_incident(r) for r in rows), total)

    def get(self, incident_id: int, group_ids: frozenset[int] | None) -> IncidentRecord | None:
        row = incident_store.get(self._c, incident_id, _in_groups(group_ids))
        return _incident(row) if row is not None else None

    def update(self, incident_id: int, change: IncidentUpdate, now: datetime) -> None:
        values = {k: v for k, v in vars(change).items() if v is not None}
        incident_store.update(self._c, incident_id, now, **values)

    def merge(self, target: int, others: Sequence[int], now: datetime) -> None:
        incident_store.merge(self._c, target, list(others), now)

    def split(self, source: int, alert_ids: Sequence[str], now: datetime) -> int:
        return incident_store.split(self._c, source, list(alert_ids), now)


class SqlSuppression:
    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def listing(self) -> list[SuppressionRecord]:
        return [
            SuppressionRecord(
                int(r.id), r.alert_title, r.scope, r.action, dict(r.conditions or {}), r.machine_id, bool(r.enabled),
                r.comment, r.created_by, device_store.aware(r.created_at), int(r.hits),
            )
            for r in suppression_store.listing(self._c)
        ]

    def create(self, rule: NewSuppression, now: datetime) -> int:
        return suppression_store.create(
            self._c, title=rule.alert_title, scope=SuppressionScope(rule.scope), action=SuppressionAction(rule.action),
            conditions=rule.conditions, machine_id=rule.machine_id, comment=rule.comment, who=rule.created_by,
            now=now,
        )

    def set_enabled(self, rule_id: int, enabled: bool) -> bool:
        return suppression_store.set_enabled(self._c, rule_id, enabled)

    def delete(self, rule_id: int) -> bool:
        return suppression_store.delete(self._c, rule_id)


class SqlAsr:
    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def indicators(self) -> list[IndicatorRecord]:
        return [IndicatorRecord(ind, r.created_by, device_store.aware(r.creation_time), r.last_updated_by,
                                device_store.aware(r.last_update_time)) for ind, r in indicator_store.listing(self._c)]

    def save_indicator(self, indicator: Indicator, who: str, now: datetime) -> tuple[int, bool]:
        return indicator_store.save(self._c, indicator, who, now)

    def delete_indicator(self, indicator_id: int) -> bool:
        return indicator_store.delete(self._c, indicator_id)

    def group_names(self) -> dict[int, str]:
        return indicator_store.group_names(self._c)

    def policies(self) -> list[AsrPolicyRecord]:
        return [AsrPolicyRecord(g, p, m["updatedBy"], m["updateTime"], m["version"])
                for g, p, m in indicator_store.policies(self._c)]

    def save_policy(self, group_id: int | None, policy: AsrPolicy, who: str, now: datetime) -> int:
        return indicator_store.save_policy(self._c, group_id, policy, who, now)

    def delete_policy(self, group_id: int | None) -> bool:
        return indicator_store.delete_policy(self._c, group_id)


class SqlAv:
    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def policies(self) -> list[AvPolicyRecord]:
        return av_store.policies(self._c)

    def save_policy(self, group_id: int | None, policy: dict[str, Any], who: str, now: datetime) -> int:
        return av_store.save_policy(self._c, group_id, policy, who, now)


class SqlApiTokens:
    def __init__(self, conn: sa.Connection) -> None:
        self._c = conn

    def _owners(self) -> dict[int, str]:
        return {int(r.id): r.username for r in self._c.execute(sa.select(users_table.c.id, users_table.c.username))}

    def _user_id(self, name: str) -> int | None:
        return self._c.execute(sa.select(users_table.c.id).where(users_table.c.username == name)).scalar()

    @staticmethod
    def _record(t: sessions.ApiToken, owner: str) -> ApiTokenRecord:
        return ApiTokenRecord(t.id, t.name, owner, t.scopes, t.created_at, t.expires_at, t.revoked)

    def listing(self, owner: str | None = None) -> list[ApiTokenRecord]:
        uid = None if owner is None else self._user_id(owner)
        if owner is not None and uid is None:
            return []
        names = self._owners()
        return [self._record(t, names.get(t.user_id, "")) for t in sessions.list_api_tokens(self._c, uid)]

    def create(self, owner: str, name: str, scopes: frozenset[Permission], expires_at: datetime, now: datetime
               ) -> tuple[ApiTokenRecord, str] | None:
        uid = self._user_id(owner)
        if uid is None:
            return None
        token, secret = sessions.create_api_token(self._c, user_id=uid, name=name, scopes=scopes,
                                                  expires_at=expires_at, now=now)
        return self._record(token, owner), secret

    def revoke(self, token_id: int, now: datetime, owner: str | None = None) -> bool:
        uid = None if owner is None else self._user_id(owner)
        if owner is not None and uid is None:
            return False
        return sessions.revoke_api_token(self._c, token_id, now, uid)


class SqlUnitOfWork:
    def __init__(self, conn: sa.Connection, issue: ActionIssuerFn | None) -> None:
        self.conn = conn
        self.devices = SqlDevices(conn)
        self.audit = SqlAudit(conn)
        self.enrollment = SqlTokens(conn)
        self.plan = SqlPlan(conn)
        self.actions = SqlActions(conn, issue)
        self.users = SqlUsers(conn)
        self.alerts = SqlAlerts(conn)
        self.incidents = SqlIncidents(conn)
        self.suppression = SqlSuppression(conn)
        self.asr = SqlAsr(conn)
        self.av = SqlAv(conn)
        self.api_tokens = SqlApiTokens(conn)
        self.telemetry = SqlTelemetry(conn)


class SqlStore:
    """The store on one engine; ``issue_action`` is the server's signing path (None outside the server)."""

    def __init__(self, engine: sa.Engine, issue_action: ActionIssuerFn | None = None) -> None:
        self.engine, self._issue = engine, issue_action

    def hunt_runner(self) -> SqlHuntRunner:
        """Checked read-only queries on this store's database, each in its own read-only transaction."""
        return SqlHuntRunner(self.engine)

    @contextmanager
    def begin(self) -> Iterator[UnitOfWork]:
        with self.engine.begin() as conn:
            yield SqlUnitOfWork(conn, self._issue)
