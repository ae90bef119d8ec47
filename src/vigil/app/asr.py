"""ASR services: the rule catalogue, the what-if replay of one rule over stored telemetry, and ASR policies per
device group, delivered to devices as a signed protection bundle.

The replay reads through the advanced-hunting service (the same permission, device-group scope, row quota and
``hunt.run`` audit), so a caller sees only the devices they may see; the rule is replayed as if in Block mode with
no exclusions (policies are not stored yet).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from vigil.app import hunting
from vigil.app.errors import Forbidden, InvalidInput, NotFound
from vigil.app.hunting import HuntRunner
from vigil.app.ports import ActionRequest, AsrPolicyRecord, AuditRecord, Store, UnitOfWork
from vigil.app.principal import Principal
from vigil.asr import AsrMode, AsrPolicy, AsrRule, UnknownAsrRule, bundle, catalogue, find
from vigil.core.actions import ActionType
from vigil.core.clock import Clock
from vigil.core.rbac import Permission
from vigil.store.errors import NotFound as StoreNotFound

MAX_DAYS = 180


@dataclass(frozen=True)
class WhatIfHit:
    device_id: str
    device_name: str
    process: str  # the executable started (process rules) or the writing process (file rules)
    command_line: str
    target: str  # the file written (file rules); the executable again for process rules
    count: int
    first_seen: str
    last_seen: str


@dataclass(frozen=True)
class WhatIf:
    rule: AsrRule
    days: int
    rows_scanned: int
    truncated: bool
    hits: tuple[WhatIfHit, ...]

    @property
    def total(self) -> int:
        return sum(h.count for h in self.hits)


def rules(principal: Principal) -> list[AsrRule]:
    principal.require(Permission.VIEW_DATA_SECOPS)
    return catalogue()


def rule(principal: Principal, ref: str) -> AsrRule:
    principal.require(Permission.VIEW_DATA_SECOPS)
    try:
        return find(ref)
    except UnknownAsrRule as e:
        raise NotFound(str(e)) from None


def whatif(store: Store, runner: HuntRunner, clock: Clock, principal: Principal, ref: str, days: int) -> WhatIf:
    """What a Block of rule ``ref`` would have stopped over the last ``days`` days of telemetry."""
    principal.require(Permission.VIEW_DATA_SECOPS)
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_DAYS:
        raise InvalidInput(f"days must be a whole number from 1 to {MAX_DAYS}, not {days!r}", field="days")
    entry = rule(principal, ref)
    since = clock.now() - timedelta(days=days)
    stamp = since.strftime("%Y-%m-%d %H:%M:%S")
    query = f"SELECT * FROM {entry.table} WHERE Timestamp >= '{stamp}' ORDER BY Timestamp"
    result = hunting.run_query(store, runner, clock, principal, query)
    counts: Counter[tuple[str, str, str, str, str]] = Counter()
    seen: dict[tuple[str, str, str, str, str], list[str]] = {}
    for row in result.results:
        if not entry.matches(entry.table, row):
            continue
        key = _key(entry, row)
        counts[key] += 1
        stamp_text = str(row.get("Timestamp") or "")
        first_last = seen.setdefault(key, [stamp_text, stamp_text])
        first_last[0], first_last[1] = min(first_last[0], stamp_text), max(first_last[1], stamp_text)
    hits = tuple(
        WhatIfHit(k[0], k[1], k[2], k[3], k[4], n, seen[k][0], seen[k][1])
        for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    )
    return WhatIf(entry, days, len(result.results), result.truncated, hits)


def _key(entry: AsrRule, row: dict[str, Any]) -> tuple[str, str, str, str, str]:
    device = (str(row.get("DeviceId") or ""), str(row.get("DeviceName") or ""))
    if entry.table == "DeviceFileEvents":
        process = str(row.get("InitiatingProcessFolderPath") or row.get("InitiatingProcessFileName") or "")
        return (*device, process, str(row.get("InitiatingProcessCommandLine") or ""), str(row.get("FolderPath") or ""))
    process = str(row.get("FolderPath") or row.get("FileName") or "")
    return (*device, process, str(row.get("ProcessCommandLine") or ""), process)


# --- ASR policies per device group, and delivery of the protection bundle to devices ---------------------------

DEFAULT_SCOPE = "default"  # the name the API and CLI give the tenant default policy


@dataclass(frozen=True)
class PolicyView:
    group_id: int | None
    group_name: str  # DEFAULT_SCOPE for the tenant default
    record: AsrPolicyRecord | None  # None: nothing stored (every rule Off, no exclusions)
    devices_updated: int = 0

    @property
    def policy(self) -> AsrPolicy:
        return self.record.policy if self.record else AsrPolicy()


def _group(uow: UnitOfWork, who: Principal, name: str | None, now: datetime) -> int | None:
    """The group id for ``name`` (None or "default": the tenant default, which needs every group)."""
    if name is None or name == DEFAULT_SCOPE:
        return None
    try:
        gid = uow.devices.group_id(name, now)
    except StoreNotFound:
        raise NotFound(f"no device group named {name!r}", field="group") from None
    if not who.sees_group(gid):
        raise NotFound(f"no device group named {name!r}", field="group")
    return gid


def policies(store: Store, clock: Clock, who: Principal) -> list[PolicyView]:
    """The tenant default and every stored group policy the caller may see."""
    who.require(Permission.VIEW_DATA_SECOPS)
    with store.begin() as uow:
        names = uow.asr.group_names()
        stored = {p.group_id: p for p in uow.asr.policies()}
    views = [PolicyView(None, DEFAULT_SCOPE, stored.pop(None, None))]
    views += [PolicyView(g, names.get(g, str(g)), p) for g, p in sorted(stored.items(), key=lambda kv: kv[0] or 0)
              if g is not None and who.sees_group(g)]
    return views


def policy(store: Store, clock: Clock, who: Principal, group: str | None) -> PolicyView:
    who.require(Permission.VIEW_DATA_SECOPS)
    with store.begin() as uow:
        gid = _group(uow, who, group, clock.now())
        found = next((p for p in uow.asr.policies() if p.group_id == gid), None)
        return PolicyView(gid, DEFAULT_SCOPE if gid is None else uow.asr.group_names().get(gid, str(gid)), found)


def parse_policy(body: Mapping[str, Any]) -> AsrPolicy:
    """A policy from the API's JSON ({"modes": {rule: mode}, "exclusions": [...], "ruleExclusions": {...}}), rules
    named by GUID or name, modes by number or name; InvalidInput naming the field otherwise."""
    if not isinstance(body, Mapping):
        raise InvalidInput("the policy must be a JSON object")
    unknown = set(body) - {"modes", "exclusions", "ruleExclusions"}
    if unknown:
        raise InvalidInput(f"unknown field(s) {', '.join(sorted(unknown))}; use modes, exclusions, ruleExclusions",
                           field=sorted(unknown)[0])

    def by_guid(name: str) -> dict[str, Any]:
        raw = body.get(name) or {}
        if not isinstance(raw, Mapping):
            raise InvalidInput(f"{name} must map rule GUIDs or names to values", field=name)
        out = {}
        for ref, value in raw.items():
            try:
                out[find(str(ref)).guid] = value
            except UnknownAsrRule as e:
                raise InvalidInput(f"{name}: {e}", field=name) from None
        return out

    try:
        return AsrPolicy.from_json({"modes": by_guid("modes"), "exclusions": body.get("exclusions") or [],
                                    "ruleExclusions": by_guid("ruleExclusions")})
    except ValueError as e:
        text = str(e)
        raise InvalidInput(text, field=text.split("[", 1)[0].split(":", 1)[0]) from None


def set_policy(store: Store, clock: Clock, who: Principal, group: str | None, new: AsrPolicy) -> PolicyView:
    """Replace the ASR policy of ``group`` (None or "default": the tenant default), audited as
    ``asr.policy.update``, and send the new bundle to every device it reaches."""
    who.require(Permission.MANAGE_SECURITY_SETTINGS)
    now = clock.now()
    with store.begin() as uow:
        gid = _group(uow, who, group, now)
        if gid is None and who.device_group_ids is not None:
            raise Forbidden("the tenant default ASR policy applies to every device group; it needs access to all")
        before = next((p for p in uow.asr.policies() if p.group_id == gid), None)
        version = uow.asr.save_policy(gid, new, who.username or who.actor, now)
        sent = deliver(uow, now, who, None if gid is None else frozenset({gid}))
        uow.audit.append(AuditRecord(
            who.actor, "asr.policy.update", "asr_policy", DEFAULT_SCOPE if gid is None else str(gid),
            before=before.policy.to_json() if before else None, after={**new.to_json(), "version": version,
                                                                        "devicesUpdated": sent},
            source_ip=who.source_ip), now)
        record = next(p for p in uow.asr.policies() if p.group_id == gid)
        name = DEFAULT_SCOPE if gid is None else uow.asr.group_names().get(gid, str(gid))
        return PolicyView(gid, name, record, sent)


def set_mode(store: Store, clock: Clock, who: Principal, group: str | None, rule_ref: str, mode: AsrMode
             ) -> PolicyView:
    """Switch one rule of ``group``'s policy, keeping the rest (the portal's mode switch)."""
    who.require(Permission.MANAGE_SECURITY_SETTINGS)
    try:
        entry = find(rule_ref)
    except UnknownAsrRule as e:
        raise NotFound(str(e)) from None
    with store.begin() as uow:
        gid = _group(uow, who, group, clock.now())
        found = next((p for p in uow.asr.policies() if p.group_id == gid), None)
    current = found.policy if found else AsrPolicy()
    return set_policy(store, clock, who, group, replace(current, modes={**current.modes, entry.guid: mode}))


def bundle_for(uow: UnitOfWork, group_id: int, now: datetime) -> dict[str, Any]:
    """The protection bundle for devices of ``group_id``: default and group ASR policy, the indicators that apply."""
    stored = {p.group_id: p for p in uow.asr.policies()}
    default, group = stored.get(None), stored.get(group_id)
    indicators = [r.indicator for r in uow.asr.indicators() if r.indicator.applies(now, group_id)]
    stamp = max([r.last_update_time for r in uow.asr.indicators()], default=None)
    revision = (f"default:{default.version if default else 0},group:{group.version if group else 0},"
                f"indicators:{len(indicators)}@{stamp.isoformat() if stamp else '-'}")
    av = {p.group_id: p.version for p in uow.av.policies()}
    revision += f",av:{av.get(None, 0)}.{av.get(group_id, 0)}"
    data = bundle.to_json(group_id, default.policy if default else AsrPolicy(), group.policy if group else None,
                          indicators, revision)
    from vigil.app import antivirus  # its policy rides in the same signed bundle; antivirus imports this module

    data["Antivirus"] = antivirus.effective_for(uow, group_id).as_dict()
    return data


def deliver(uow: UnitOfWork, now: datetime, who: Principal, group_ids: frozenset[int] | None,
            reason: str = "ASR policy or indicators changed") -> int:
    """Sign an ApplyProtectionPolicy command for each active device of ``group_ids`` (None: every device); the
    number of devices."""
    sent = 0
    bundles: dict[int, dict[str, Any]] = {}
    for d in uow.devices.in_groups(group_ids):
        if d.offboarded_at is not None:
            continue
        params = bundles.setdefault(d.group_id, bundle_for(uow, d.group_id, now))
        uow.actions.issue(ActionRequest(d.id, ActionType.APPLY_PROTECTION_POLICY, params,
                                        reason),
                          AuditRecord(who.actor, "", "", "", source_ip=who.source_ip), now)
        sent += 1
    return sent


def deliver_to_new_devices(uow: UnitOfWork, now: datetime, device_ids: list[str]) -> int:
    """Sign the current bundle for devices that enrolled (or moved group) after the last policy or indicator
    change: that change was delivered only to the devices that existed then. Nothing when no policy or indicator
    is stored (the agent's built-in state is already "all Off, no indicators")."""
    if not device_ids or (not uow.asr.policies() and not uow.asr.indicators()):
        return 0
    sent = 0
    bundles: dict[int, dict[str, Any]] = {}
    for device_id in device_ids:
        d = uow.devices.get(device_id)
        if d is None or d.offboarded_at is not None:
            continue
        params = bundles.setdefault(d.group_id, bundle_for(uow, d.group_id, now))
        uow.actions.issue(ActionRequest(d.id, ActionType.APPLY_PROTECTION_POLICY, params,
                                        "the device's current ASR policy and indicators"),
                          AuditRecord("system:protection", "", "", ""), now)
        sent += 1
    return sent


def group_names(store: Store, who: Principal) -> list[str]:
    """The device groups the caller may set a policy for, by name."""
    who.require(Permission.VIEW_DATA_SECOPS)
    with store.begin() as uow:
        return sorted(name for gid, name in uow.asr.group_names().items() if who.sees_group(gid))


def report(store: Store, runner: HuntRunner, clock: Clock, who: Principal, days: int) -> dict[str, dict[str, int]]:
    """ASR events of the last ``days`` days on the caller's devices: {rule name: {day: count}} (through hunting: its
    scope, quota and audit)."""
    who.require(Permission.VIEW_DATA_SECOPS)
    if not 1 <= days <= MAX_DAYS:
        raise InvalidInput(f"days must be from 1 to {MAX_DAYS}", field="days")
    stamp = (clock.now() - timedelta(days=days)).strftime("%Y-%m-%d %H:%M:%S")
    query = (f"SELECT ActionType, Timestamp FROM DeviceEvents WHERE Timestamp >= '{stamp}' "
             "AND ActionType LIKE 'Asr%'")
    out: dict[str, dict[str, int]] = {}
    names = sorted((r.name for r in catalogue()), key=len, reverse=True)
    for row in hunting.run_query(store, runner, clock, who, query).results:
        action = str(row.get("ActionType") or "")[3:]
        name = next((n for n in names if action.startswith(n)), None)
        if name is None:
            continue
        day = str(row.get("Timestamp") or "")[:10]
        out.setdefault(name, {}).setdefault(day, 0)
        out[name][day] += 1
    return out
