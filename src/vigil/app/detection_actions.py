"""A custom detection's automatic actions: run through the response-action and investigation services on the devices
(or files) of a run's new hits, as the rule, within its device groups, with the permissions its editor proved.

Who may set an action is checked when the rule is saved (the permission each action needs, as when run by hand);
a run acts as ``detection:<id>``, holding only those permissions and seeing only the rule's device groups, so a
rule cannot act on a device its makers could not. Each action is signed and audited by the action service and
shows in the action center with the rule as its requestor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from vigil.app import actions, air
from vigil.app.errors import AppError
from vigil.app.ports import AuditRecord, Store
from vigil.app.principal import Principal
from vigil.core.actions import ActionType
from vigil.core.clock import Clock
from vigil.core.rbac import Permission
from vigil.hunt.detections import Hit

# Each action Vigil runs automatically: the response action and its fixed parameters (None: the investigation).
_ACTION_TYPES: dict[str, tuple[ActionType | None, dict[str, Any]]] = {
    "isolateDevice": (ActionType.ISOLATE, {"IsolationType": "Full", "AllowList": []}),
    "collectInvestigationPackage": (ActionType.COLLECT_INVESTIGATION_PACKAGE, {}),
    "runAntivirusScan": (ActionType.RUN_ANTIVIRUS_SCAN, {"ScanType": "Quick"}),
    "restrictAppExecution": (ActionType.RESTRICT_CODE_EXECUTION, {}),
    "stopAndQuarantineFile": (ActionType.STOP_AND_QUARANTINE_FILE, {}),  # the file from each hit's row
    "initiateInvestigation": (None, {}),
}


class _Detection(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def rule_id(self) -> str: ...

    @property
    def device_group_ids(self) -> frozenset[int] | None: ...

    @property
    def last_modified_by(self) -> str: ...


def permission(name: str) -> Permission:
    """The permission running ``name`` by hand needs (Defender's: investigation or active remediation)."""
    kind, _ = _ACTION_TYPES[name]
    if kind is None:
        return Permission.ALERTS_INVESTIGATION
    return actions.PERMISSION.get(kind, Permission.REMEDIATION_SECOPS)


def require(who: Principal, names: Sequence[str]) -> None:
    """Refuse a rule whose automatic actions its editor could not run by hand."""
    for name in names:
        who.require(permission(name))


def acting_as(d: _Detection, names: Sequence[str]) -> Principal:
    actor = f"detection:{d.id}"
    return Principal(actor, frozenset(permission(n) for n in names), d.device_group_ids,
                     username=d.last_modified_by or actor)


@dataclass(frozen=True)
class ActionOutcome:
    action: str
    device_id: str
    alert_id: str
    machine_action_id: str | None = None  # the action center's id (or the investigation's)
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"action": self.action, "deviceId": self.device_id, "alertId": self.alert_id,
                "id": self.machine_action_id, "error": self.error}


def _file(row: Mapping[str, Any]) -> dict[str, Any] | None:
    out = {k: row[c] for k, c in (("Sha256", "SHA256"), ("Path", "FolderPath")) if row.get(c)}
    return out or None


def run(store: Store, clock: Clock, d: _Detection, names: Sequence[str], title: str,
        new: Sequence[tuple[Hit, str]]) -> list[ActionOutcome]:
    """Each of ``names`` once per device with new hits (per distinct file for stopAndQuarantineFile)."""
    if not names or not new:
        return []
    who = acting_as(d, names)
    first_alert: dict[str, str] = {}
    for hit, alert_id in new:
        first_alert.setdefault(hit.device_id, alert_id)
    out: list[ActionOutcome] = []
    for name in names:
        kind, params = _ACTION_TYPES[name]
        targets: list[tuple[str, str, dict[str, Any]]] = []
        if kind is ActionType.STOP_AND_QUARANTINE_FILE:
            seen: set[tuple[str, str]] = set()
            for hit, alert_id in new:
                f = _file(hit.row)
                if f is None:
                    out.append(ActionOutcome(name, hit.device_id, alert_id, error="the result row has no SHA256 or "
                                             "FolderPath column to name the file"))
                    continue
                key = (hit.device_id, repr(sorted(f.items())))
                if key not in seen:
                    seen.add(key)
                    targets.append((hit.device_id, alert_id, f))
        else:
            targets = [(dev, alert_id, params) for dev, alert_id in first_alert.items()]
        for device_id, alert_id, p in targets:
            comment = f"Automatic action of custom detection {title!r} ({d.rule_id}), alert {alert_id}"
            try:
                if kind is None:
                    inv = air.start(store, clock, who, device_id, triggered_by="Alert", alert_id=alert_id,
                                    comment=comment)
                    done = str(inv.record.id)
                else:
                    done = actions.start(store, clock, who, device_id, kind, p, comment).id
            except AppError as e:
                out.append(ActionOutcome(name, device_id, alert_id, error=e.message))
                continue
            out.append(ActionOutcome(name, device_id, alert_id, done))
    failed = [o.as_json() for o in out if o.error]
    if failed:  # the action service audits what it issued; what it refused is recorded here, not dropped
        with store.begin() as uow:
            uow.audit.append(AuditRecord(who.actor, "detection.action_failed", "custom_detection", str(d.id),
                                         after={"failed": failed}), clock.now())
    return out
