"""Store ports: one Protocol per repository and the unit of work that holds them in one transaction.

``vigil.store.sql`` implements them on SQLAlchemy and ``vigil.app.memory`` in memory; the contract suite
(tests/contract/) runs the same tests on both, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from vigil.asr import AsrPolicy
from vigil.asr.indicators import Indicator
from vigil.core.actions import ActionType, MachineAction
from vigil.core.audit import AuditEntry, ChainReport
from vigil.core.plan import Plan, Ring
from vigil.core.rbac import Permission

if TYPE_CHECKING:
    from vigil.app.hunting import HuntRunner
    from vigil.app.paging import Page, PageRequest

@dataclass(frozen=True)
class DeviceRecord:
    """A device as the control plane knows it, with its group's name."""

    id: str
    computer_dns_name: str
    os_platform: str
    os_version: str
    os_build: str | None
    agent_version: str
    group_id: int
    group_name: str
    first_seen: datetime
    last_seen: datetime
    last_ip: str | None = None
    last_external_ip: str | None = None
    tags: tuple[str, ...] = ()
    offboarded_at: datetime | None = None
    sensors: dict[str, Any] = field(default_factory=dict)
    counters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditRecord:
    """One change to append to the audit log: who did what to which object, from where."""

    actor: str
    action: str
    target_type: str
    target_id: str
    before: Any = None
    after: Any = None
    reason: str | None = None
    source_ip: str | None = None


@dataclass(frozen=True)
class LoggedAudit:
    """One entry of the audit log as stored: its place in the chain and its hash."""

    entry: AuditEntry
    hash: str


@dataclass(frozen=True)
class TagChange:
    """An analyst's tag change: the device's own tags before and after, and the group moves it caused."""

    before: tuple[str, ...]
    after: tuple[str, ...]
    # (device id, from group id, to group id) for each device the group rules moved.
    group_moves: tuple[tuple[str, int, int], ...]


@dataclass(frozen=True)
class IssuedToken:
    token: str
    token_id: int
    group: str
    expires_at: datetime
    max_uses: int


@dataclass(frozen=True)
class PlanGate:
    """What the onboarding gate needs of the current plan: is it signed off, and which group is Evaluate."""

    version: int
    signed_off: bool
    missing: tuple[str, ...]
    ring_groups: dict[Ring, str]


@dataclass(frozen=True)
class RolloutPlan:
    """What enabling a ring's next component needs of the current plan (``vigil.app.rollout``)."""

    version: int
    plan: Plan
    signed_off: bool
    ring: Ring  # the deployment's current ring
    stored: dict[str, dict[str, str]]  # ring -> component -> off|audit|on|failed, as saved
    ring_groups: dict[Ring, str]  # each ring's device group, named as the store has it


@dataclass(frozen=True)
class ActionRequest:
    """A response action to record and sign; the issuer fills in id, times and the signed command."""

    device_id: str
    type: ActionType
    parameters: dict[str, Any]
    comment: str | None
    require_approval: bool = False


@dataclass(frozen=True)
class UserAccess:
    """A Vigil user's rights as the permission model resolves them: what they may do, on which device groups."""

    username: str
    permissions: frozenset[Permission]
    # None means every device group.
    device_group_ids: frozenset[int] | None
    is_admin: bool = False


@dataclass(frozen=True)
class AlertRecord:
    """One alert as the queue shows it (hidden, i.e. suppressed, alerts never leave the store)."""

    id: str
    # None for an identity alert, which is about the account ``account_name`` instead of a device.
    machine_id: str | None
    incident_id: int | None
    title: str
    description: str
    severity: str
    category: str
    status: str
    classification: str | None
    determination: str | None
    investigation_state: str
    detection_source: str
    rule_id: str
    mitre_techniques: tuple[str, ...]
    assigned_to: str | None
    alert_creation_time: datetime
    first_event_time: datetime
    last_event_time: datetime
    last_update_time: datetime
    resolved_time: datetime | None
    event_count: int
    evidence: tuple[Any, ...]
    account_name: str | None = None


@dataclass(frozen=True)
class AlertNote:
    """A comment on an alert: an analyst's (``Comment``) or the automatic record of a change (``History``)."""

    text: str
    author: str
    created_at: datetime
    kind: str


@dataclass(frozen=True)
class AlertQuery:
    machine_id: str | None = None
    status: str | None = None
    severity: str | None = None
    incident_id: int | None = None
    since: datetime | None = None
    limit: int = 1000


@dataclass(frozen=True)
class AlertUpdate:
    """Defender's update-alert properties; None leaves one as it is."""

    status: str | None = None
    assigned_to: str | None = None
    classification: str | None = None
    determination: str | None = None
    comment: str | None = None


@dataclass(frozen=True)
class IncidentRecord:
    """An incident as stored: its alerts' devices and entities are those of all its alerts, seen or not."""

    id: int
    name: str
    status: str
    severity: str
    assigned_to: str | None
    classification: str | None
    determination: str | None
    created_time: datetime
    last_update_time: datetime
    last_activity: datetime
    device_ids: tuple[str, ...]
    entities: tuple[tuple[str, str], ...]
    redirect_incident_id: int | None = None


@dataclass(frozen=True)
class IncidentUpdate:
    status: str | None = None
    assigned_to: str | None = None
    classification: str | None = None
    determination: str | None = None


@dataclass(frozen=True)
class SuppressionRecord:
    id: int
    alert_title: str
    scope: str
    action: str
    conditions: dict[str, str]
    # Set for a Device-scoped rule: the rule belongs to that device's group.
    machine_id: str | None
    enabled: bool
    comment: str
    created_by: str
    created_at: datetime
    hits: int


@dataclass(frozen=True)
class NewSuppression:
    alert_title: str
    scope: str
    action: str
    conditions: dict[str, str]
    machine_id: str | None
    comment: str
    created_by: str


class DeviceRepository(Protocol):
    def in_groups(self, group_ids: frozenset[int] | None) -> Sequence[DeviceRecord]:
        """Devices ordered by host name, only those in ``group_ids`` unless it is None."""
        ...

    def get(self, device_id: str) -> DeviceRecord | None: ...

    def page(self, group_ids: frozenset[int] | None, req: PageRequest) -> Page[DeviceRecord]:
        """One page of the devices in ``group_ids`` (all when None): sorts name, lastSeen, group, firstSeen; the
        words searched in name, id, addresses, group, OS platform and tags."""
        ...

    def find(self, ref: str) -> Sequence[DeviceRecord]:
        """Devices whose id or host name is ``ref`` (an id prefix of 8+ characters also matches)."""
        ...

    def offboard(self, device_id: str, now: datetime) -> bool:
        """Revoke the device's credential; False when it was already offboarded."""
        ...

    def group_id(self, name: str | None, now: datetime) -> int:
        """The id of the named device group (the default group for None); raises store NotFound."""
        ...

    def set_tags(self, device_id: str, add: Sequence[str], remove: Sequence[str], now: datetime) -> TagChange:
        """Change the analysts' tags of a device and re-run the group rules over it.

        A malformed tag raises ``vigil.core.groups.GroupRuleError``; an unknown device raises store NotFound.
        """
        ...


class AuditRepository(Protocol):
    def append(self, record: AuditRecord, now: datetime) -> int:
        """Record ``record`` in the unit of work's transaction; returns its sequence number."""
        ...

    def entries(self, action: str | None = None) -> Sequence[AuditRecord]: ...

    def log(self, action: str | None = None, limit: int | None = None) -> Sequence[LoggedAudit]:
        """The log newest first, with sequence numbers, times and hashes."""
        ...

    def page(self, action: str | None, req: PageRequest) -> Page[LoggedAudit]:
        """One page of the log (sorts seq, actor, action); words searched in actor, address, action, target and
        reason."""
        ...

    def chain(self) -> Iterator[LoggedAudit]:
        """Every entry oldest first, read in pages (for export and verification)."""
        ...

    def verify(self) -> ChainReport:
        """Check the hash chain from the oldest entry kept (from genesis while entry 1 is kept)."""
        ...


class TelemetryReader(Protocol):
    def timeline(
        self, device_id: str, start: datetime | None, end: datetime | None, tables: Sequence[str] | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        """The device's events across ``tables`` (all when None), newest first; each row holds its table's
        non-null columns plus ``Table``. Rows, not records: each table has its own columns."""
        ...


class EnrollmentTokens(Protocol):
    def issue(
        self, *, group: str | None, expires_at: datetime, max_uses: int, created_by: str, now: datetime
    ) -> IssuedToken: ...


class PlanRepository(Protocol):
    def gate(self) -> PlanGate | None:
        """The current plan's sign-off state; None when there is no plan (an evaluation install)."""
        ...

    def rollout(self) -> RolloutPlan | None:
        """The current plan with each ring's component states; None when there is no plan."""
        ...

    def unmet_criteria(self, ring: Ring, now: datetime) -> tuple[str, ...]:
        """The exit criteria ``ring`` does not meet, each as "name (value, target …)"; empty when all are met."""
        ...

    def save_rollout(self, ring: Ring, component: str, state: str, result: dict[str, Any], now: datetime) -> None:
        """Record ``ring``'s new state of ``component`` and the outcome of its last step (per device group)."""
        ...


class ActionIssuer(Protocol):
    def issue(self, request: ActionRequest, who: AuditRecord, now: datetime) -> MachineAction:
        """Record, sign (unless held for approval) and audit one action; ``who`` names actor and source."""
        ...


class AlertRepository(Protocol):
    def query(self, q: AlertQuery, group_ids: frozenset[int] | None) -> Sequence[AlertRecord]:
        """Alerts newest first, only on devices in ``group_ids`` unless it is None."""
        ...

    def page(self, q: AlertQuery, group_ids: frozenset[int] | None, req: PageRequest) -> Page[AlertRecord]:
        """One page of ``q``'s alerts (its limit unused): sorts lastActivity, severity, title, status, events,
        created; words searched in title, id, category, account, assignee, techniques, device id and name."""
        ...

    def get(self, alert_id: str, group_ids: frozenset[int] | None) -> AlertRecord | None: ...

    def notes(self, alert_id: str) -> Sequence[AlertNote]:
        """The alert's comments and history, oldest first."""
        ...

    def update(self, alert_id: str, change: AlertUpdate, who: str, now: datetime) -> bool:
        """Apply ``change``, each changed property recorded as a History note by ``who``; False if no such alert."""
        ...


class IncidentRepository(Protocol):
    """Incidents; ``group_ids`` (None for all) keeps those with no alert on the caller's devices out."""

    def listing(
        self, status: str | None, group_ids: frozenset[int] | None, limit: int = 1000
    ) -> Sequence[IncidentRecord]:
        """Incidents newest activity first, Redirected (merged) ones left out."""
        ...

    def page(self, status: str | None, severity: str | None, group_ids: frozenset[int] | None,
             req: PageRequest) -> Page[IncidentRecord]:
        """One page of the incidents (Redirected left out): sorts lastActivity, severity, name, status, created;
        words searched in name, id, assignee and the ids and names of its devices."""
        ...

    def get(self, incident_id: int, group_ids: frozenset[int] | None) -> IncidentRecord | None: ...

    def update(self, incident_id: int, change: IncidentUpdate, now: datetime) -> None: ...

    def merge(self, target: int, others: Sequence[int], now: datetime) -> None:
        """Move the alerts of ``others`` into ``target``, the others Redirected; raises store InvalidChange."""
        ...

    def split(self, source: int, alert_ids: Sequence[str], now: datetime) -> int:
        """Move ``alert_ids`` into a new incident, returned; raises store InvalidChange."""
        ...


class SuppressionRepository(Protocol):
    def listing(self) -> Sequence[SuppressionRecord]:
        """Every rule, by id."""
        ...

    def create(self, rule: NewSuppression, now: datetime) -> int:
        """Store a rule (enabled, no hits) and return its id; malformed conditions raise SuppressionError."""
        ...

    def set_enabled(self, rule_id: int, enabled: bool) -> bool: ...

    def delete(self, rule_id: int) -> bool: ...


@dataclass(frozen=True)
class IndicatorRecord:
    """A stored indicator (its ``id`` set) and who made and last changed it."""

    indicator: Indicator
    created_by: str
    creation_time: datetime
    last_updated_by: str
    last_update_time: datetime


@dataclass(frozen=True)
class AsrPolicyRecord:
    """The ASR policy of one device group (None: the tenant default) and its version."""

    group_id: int | None
    policy: AsrPolicy
    updated_by: str
    update_time: datetime
    version: int


class AsrRepository(Protocol):
    """Indicators and ASR policies."""

    def indicators(self) -> Sequence[IndicatorRecord]:
        """Every indicator, by id."""
        ...

    def save_indicator(self, indicator: Indicator, who: str, now: datetime) -> tuple[int, bool]:
        """Submit or update (one indicator per type and value): its id, and True when it is new."""
        ...

    def delete_indicator(self, indicator_id: int) -> bool: ...

    def group_names(self) -> dict[int, str]:
        """Every device group's name by id."""
        ...

    def policies(self) -> Sequence[AsrPolicyRecord]:
        """The stored policies, the tenant default (group None) first."""
        ...

    def save_policy(self, group_id: int | None, policy: AsrPolicy, who: str, now: datetime) -> int:
        """Replace the policy of ``group_id``; returns its new version."""
        ...

    def delete_policy(self, group_id: int | None) -> bool: ...


@dataclass(frozen=True)
class AvPolicyRecord:
    """The antivirus policy of one device group (None: the tenant default) as stored: vigil.av.policy's JSON."""

    group_id: int | None
    policy: dict[str, Any]
    updated_by: str
    update_time: datetime
    version: int


@dataclass(frozen=True)
class ApiTokenRecord:
    """A user's API token as its owner (or an administrator) lists it; the secret is never stored."""

    id: int
    name: str
    owner: str
    scopes: frozenset[Permission]
    created_at: datetime
    expires_at: datetime
    revoked: bool


class ApiTokenRepository(Protocol):
    def listing(self, owner: str | None = None) -> Sequence[ApiTokenRecord]:
        """Tokens in creation order, only ``owner``'s when given."""
        ...

    def create(self, owner: str, name: str, scopes: frozenset[Permission], expires_at: datetime, now: datetime
               ) -> tuple[ApiTokenRecord, str] | None:
        """The new token and its secret (shown once); None when ``owner`` is no user."""
        ...

    def revoke(self, token_id: int, now: datetime, owner: str | None = None) -> bool:
        """Revoke a live token (only ``owner``'s when given); False when there is none."""
        ...


class AvPolicyRepository(Protocol):
    """Antivirus policies per device group (issue 20)."""

    def policies(self) -> Sequence[AvPolicyRecord]:
        """The stored policies, the tenant default (group None) first."""
        ...

    def save_policy(self, group_id: int | None, policy: dict[str, Any], who: str, now: datetime) -> int:
        """Replace the policy of ``group_id``; returns its new version."""
        ...


@dataclass(frozen=True)
class UserSummary:
    """A Vigil account as an administrator lists it."""

    username: str
    role: str
    email: str | None
    source: str
    disabled: bool
    user_groups: tuple[str, ...] = ()


class UserDirectory(Protocol):
    def access(self, username: str) -> UserAccess | None:
        """The named user's permissions and device groups under the current mode; None for no such user."""
        ...

    def list_all(self) -> list[UserSummary]:
        """Every account, disabled ones too, by name."""
        ...

    def create(self, username: str, password: str, role: str, email: str | None, now: datetime
               ) -> UserSummary | None:
        """A new local account; None when the name is taken."""
        ...

    def set_disabled(self, username: str, disabled: bool, now: datetime) -> UserSummary | None:
        """Disable (signing the user out everywhere) or enable an account; None for no such user."""
        ...

    def set_password(self, username: str, password: str, now: datetime) -> UserSummary | None:
        """A new password for a local account, every session of it signed out; None for no such user."""
        ...


class UnitOfWork(Protocol):
    @property
    def devices(self) -> DeviceRepository: ...
    @property
    def audit(self) -> AuditRepository: ...
    @property
    def enrollment(self) -> EnrollmentTokens: ...
    @property
    def plan(self) -> PlanRepository: ...
    @property
    def actions(self) -> ActionIssuer: ...
    @property
    def users(self) -> UserDirectory: ...
    @property
    def alerts(self) -> AlertRepository: ...
    @property
    def incidents(self) -> IncidentRepository: ...
    @property
    def suppression(self) -> SuppressionRepository: ...
    @property
    def asr(self) -> AsrRepository: ...
    @property
    def av(self) -> AvPolicyRepository: ...
    @property
    def api_tokens(self) -> ApiTokenRepository: ...
    @property
    def telemetry(self) -> TelemetryReader: ...


class Store(Protocol):
    def begin(self) -> AbstractContextManager[UnitOfWork]:
        """One transaction: committed when the block ends, rolled back when it raises."""
        ...


class HuntableStore(Store, Protocol):
    """A store that can also run checked read-only queries over its telemetry (advanced hunting, ASR what-if,
    custom detections). The SQL store is one; the in-memory fake is not: its tests pass a runner themselves."""

    def hunt_runner(self) -> HuntRunner: ...
