"""Antivirus (NGP) policies per device group: stored, versioned and audited as ``av.policy.update``; each change
reaches the group's devices in the signed ApplyProtectionPolicy command (its bundle's ``Antivirus`` part: the
group's effective policy, see ``vigil.av.policy.effective``), and agents also fetch it at /agent/v1/av/update.

``set_mode`` is the small entry point the deployment plan uses: NGP passive beside an incumbent antivirus,
active (block) once it is removed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from vigil.app.errors import Forbidden, InvalidInput, NotFound
from vigil.app.ports import AuditRecord, AvPolicyRecord, Store, UnitOfWork
from vigil.app.principal import Principal
from vigil.av.policy import MODES, AvPolicy, PolicyError, effective, parse_policy
from vigil.core.clock import Clock
from vigil.core.rbac import Permission
from vigil.store.errors import NotFound as StoreNotFound

DEFAULT_SCOPE = "default"  # the tenant default policy, as the API, CLI and portal name it


@dataclass(frozen=True)
class PolicyView:
    group_id: int | None
    group_name: str  # DEFAULT_SCOPE for the tenant default
    record: AvPolicyRecord | None  # None: nothing stored (the agents' own settings apply)
    effective: AvPolicy  # what the group's devices get (the default merged in); the default's own for it
    devices_updated: int = 0

    @property
    def policy(self) -> AvPolicy:
        return _parse(self.record.policy if self.record else {}, self.group_name)


def _parse(raw: Mapping[str, Any], where: str) -> AvPolicy:
    try:
        return parse_policy(raw, where)
    except PolicyError as e:
        text = str(e)
        # "where.field...: why" -> the field the caller got wrong
        field = text.split(":", 1)[0].split(".", 1)[1] if "." in text.split(":", 1)[0] else None
        raise InvalidInput(text, field=field.split(".")[0].split("[")[0] if field else None) from None


def _group(uow: UnitOfWork, who: Principal, name: str | None, now: datetime) -> int | None:
    if name is None or name == DEFAULT_SCOPE:
        return None
    try:
        gid = uow.devices.group_id(name, now)
    except StoreNotFound:
        raise NotFound(f"no device group named {name!r}", field="group") from None
    if not who.sees_group(gid):
        raise NotFound(f"no device group named {name!r}", field="group")
    return gid


def effective_for(uow: UnitOfWork, group_id: int | None) -> AvPolicy:
    """The policy devices of ``group_id`` get: the tenant default with the group's own over it."""
    stored = {p.group_id: p for p in uow.av.policies()}
    default = _parse(stored[None].policy, DEFAULT_SCOPE) if None in stored else AvPolicy()
    group = stored.get(group_id) if group_id is not None else None
    return effective(default, _parse(group.policy, str(group_id)) if group else None)


def effective_by_name(store: Store, group_name: str | None) -> AvPolicy:
    """For the agent API (a device, not a user, asks): its group's effective policy; unknown group: the default."""
    with store.begin() as uow:
        gid = None
        if group_name:
            gid = next((g for g, n in uow.asr.group_names().items() if n == group_name), None)
        return effective_for(uow, gid)


def _view(uow: UnitOfWork, gid: int | None, sent: int = 0) -> PolicyView:
    record = next((p for p in uow.av.policies() if p.group_id == gid), None)
    name = DEFAULT_SCOPE if gid is None else uow.asr.group_names().get(gid, str(gid))
    return PolicyView(gid, name, record, effective_for(uow, gid), sent)


def policies(store: Store, clock: Clock, who: Principal) -> list[PolicyView]:
    """The tenant default and every device group the caller may see, stored policy or not."""
    who.require(Permission.VIEW_DATA_SECOPS)
    with store.begin() as uow:
        groups = sorted((gid, n) for gid, n in uow.asr.group_names().items() if who.sees_group(gid))
        return [_view(uow, None)] + [_view(uow, gid) for gid, _ in groups]


def policy(store: Store, clock: Clock, who: Principal, group: str | None) -> PolicyView:
    who.require(Permission.VIEW_DATA_SECOPS)
    with store.begin() as uow:
        return _view(uow, _group(uow, who, group, clock.now()))


def set_policy(store: Store, clock: Clock, who: Principal, group: str | None, raw: Mapping[str, Any]) -> PolicyView:
    """Replace the antivirus policy of ``group`` (None or "default": the tenant default) with ``raw`` (vigil.av.policy's
    JSON; InvalidInput naming the field otherwise), audited, and send it to every device it reaches, signed."""
    from vigil.app import asr  # asr's protection bundle carries the antivirus policy: imported late, no cycle

    who.require(Permission.MANAGE_SECURITY_SETTINGS)
    if not isinstance(raw, Mapping):
        raise InvalidInput("the antivirus policy must be a JSON object")
    new = _parse(raw, DEFAULT_SCOPE if group in (None, DEFAULT_SCOPE) else str(group))
    now = clock.now()
    with store.begin() as uow:
        gid = _group(uow, who, group, now)
        if gid is None and who.device_group_ids is not None:
            raise Forbidden("the tenant default antivirus policy applies to every device group; it needs access to "
                            "all")
        before = next((p for p in uow.av.policies() if p.group_id == gid), None)
        version = uow.av.save_policy(gid, new.as_dict(), who.username or who.actor, now)
        sent = asr.deliver(uow, now, who, None if gid is None else frozenset({gid}),
                           reason="antivirus policy changed")
        uow.audit.append(AuditRecord(
            who.actor, "av.policy.update", "av_policy", DEFAULT_SCOPE if gid is None else str(gid),
            before=before.policy if before else None,
            after={**new.as_dict(), "version": version, "devicesUpdated": sent}, source_ip=who.source_ip), now)
        return _view(uow, gid, sent)


def update_policy(store: Store, clock: Clock, who: Principal, group: str | None, changes: Mapping[str, Any],
                  clear: bool = False) -> PolicyView:
    """Change some settings of ``group``'s policy, keeping the others (``clear``: start from an empty one)."""
    current = {} if clear else policy(store, clock, who, group).policy.as_dict()
    return set_policy(store, clock, who, group, {**current, **changes})


def set_mode(store: Store, clock: Clock, who: Principal, group: str | None, mode: str) -> PolicyView:
    """Switch the antivirus of ``group`` (None: the tenant default) to ``mode``: ``passive`` (report only, beside
    another antivirus), ``block`` (active), ``audit`` or ``auto``; the rest of its policy is kept."""
    if mode not in MODES:
        raise InvalidInput(f"mode {mode!r} is not one of {', '.join(MODES)}", field="mode")
    return update_policy(store, clock, who, group, {"mode": mode})
