"""Alert suppression rules: list, create, enable or disable, delete; each change audited.

A Device-scoped rule belongs to its device's group: callers scoped to other groups neither see nor change it
(not found), as with the device itself; Organization-scoped rules name no device and every caller sees them.
"""

from __future__ import annotations

from vigil.app.errors import InvalidInput, NotFound
from vigil.app.ports import AuditRecord, NewSuppression, Store, SuppressionRecord, UnitOfWork
from vigil.app.principal import Principal
from vigil.core.clock import Clock
from vigil.core.rbac import Permission
from vigil.core.suppression import SuppressionAction, SuppressionError, SuppressionScope


def _visible(uow: UnitOfWork, who: Principal) -> list[SuppressionRecord]:
    groups = who.device_group_ids
    seen = None if groups is None else {d.id for d in uow.devices.in_groups(groups)}
    return [r for r in uow.suppression.listing() if seen is None or r.machine_id is None or r.machine_id in seen]


def _rule(uow: UnitOfWork, who: Principal, rule_id: int) -> SuppressionRecord:
    found = next((r for r in _visible(uow, who) if r.id == rule_id), None)
    if found is None:
        raise NotFound(f"no suppression rule {rule_id}", field="id")
    return found


def list_rules(store: Store, who: Principal) -> list[SuppressionRecord]:
    who.require(Permission.VIEW_DATA_SECOPS)
    with store.begin() as uow:
        return _visible(uow, who)


def create_rule(
    store: Store, clock: Clock, who: Principal, *, alert_title: str, scope: str, action: str,
    conditions: dict[str, str], machine_id: str | None, comment: str,
) -> SuppressionRecord:
    who.require(Permission.MANAGE_SECURITY_SETTINGS)
    if scope not in {s.value for s in SuppressionScope}:
        raise InvalidInput(f"scope: use one of {', '.join(SuppressionScope)}", field="scope")
    if action not in {a.value for a in SuppressionAction}:
        raise InvalidInput(f"action: use one of {', '.join(SuppressionAction)}", field="action")
    device_scoped = scope == SuppressionScope.DEVICE.value
    if device_scoped and not machine_id:
        raise InvalidInput("machineId: a Device-scoped rule names its device", field="machineId")
    if not alert_title.strip() or not comment.strip():
        raise InvalidInput("alertTitle and comment may not be empty", field="alertTitle" if not alert_title.strip()
                           else "comment")
    now = clock.now()
    with store.begin() as uow:
        if device_scoped and who.device_group_ids is not None:
            d = uow.devices.get(machine_id or "")
            if d is None or not who.sees_group(d.group_id):
                raise NotFound(f"no machine with id {machine_id!r}", field="machineId")
        rule = NewSuppression(alert_title, scope, action, dict(conditions), machine_id if device_scoped else None,
                              comment, who.username or who.actor)
        try:
            rule_id = uow.suppression.create(rule, now)
        except SuppressionError as e:
            raise InvalidInput(str(e), field=e.field) from None
        made = _rule(uow, who, rule_id)
        uow.audit.append(AuditRecord(who.actor, "suppression.create", "suppression_rule", str(rule_id), after={
            "alertTitle": alert_title, "scope": scope, "action": action, "conditions": dict(conditions),
            "machineId": made.machine_id,
        }, reason=comment, source_ip=who.source_ip), now)
        return made


def set_enabled(store: Store, clock: Clock, who: Principal, rule_id: int, enabled: bool) -> SuppressionRecord:
    who.require(Permission.MANAGE_SECURITY_SETTINGS)
    now = clock.now()
    with store.begin() as uow:
        before = _rule(uow, who, rule_id)
        if before.enabled != enabled:
            uow.suppression.set_enabled(rule_id, enabled)
            uow.audit.append(AuditRecord(
                who.actor, "suppression.enable" if enabled else "suppression.disable", "suppression_rule",
                str(rule_id), before={"enabled": before.enabled}, after={"enabled": enabled}, source_ip=who.source_ip,
            ), now)
        return _rule(uow, who, rule_id)


def delete_rule(store: Store, clock: Clock, who: Principal, rule_id: int) -> None:
    who.require(Permission.MANAGE_SECURITY_SETTINGS)
    now = clock.now()
    with store.begin() as uow:
        gone = _rule(uow, who, rule_id)
        uow.suppression.delete(rule_id)
        uow.audit.append(AuditRecord(who.actor, "suppression.delete", "suppression_rule", str(rule_id), before={
            "alertTitle": gone.alert_title, "scope": gone.scope, "action": gone.action, "machineId": gone.machine_id,
        }, source_ip=who.source_ip), now)
