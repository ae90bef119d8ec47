"""Indicators: list, submit (or update), delete, batch import with per-row results, CSV export; each change audited.

Scope: an indicator with no device groups applies to every device, so only a caller who sees every group may make,
change or delete one; a scoped caller sees the global ones and those naming one of their groups, and may only
target groups they see.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from vigil.app import asr as asr_service
from vigil.app.errors import Forbidden, InvalidInput, NotFound
from vigil.app.ports import AuditRecord, IndicatorRecord, Store, UnitOfWork
from vigil.app.principal import Principal
from vigil.asr.indicators import SEVERITIES, Indicator, IndicatorAction, IndicatorType, normalize, parse_csv, to_csv
from vigil.core.clock import Clock
from vigil.core.rbac import Permission
from vigil.store.errors import NotFound as StoreNotFound

MAX_BATCH = 500  # Defender's limit per import request
# Defender's legacy action names: Alert is Audit with an alert, AlertAndBlock is Block with an alert.
LEGACY_ACTIONS = {"Alert": IndicatorAction.AUDIT, "AlertAndBlock": IndicatorAction.BLOCK}


@dataclass(frozen=True)
class Listed:
    record: IndicatorRecord
    group_names: tuple[str, ...]


@dataclass(frozen=True)
class RowResult:
    """One row of a batch: saved (``record``) or refused (``error``, naming the field)."""

    index: int
    value: str
    record: Listed | None = None
    created: bool = False
    error: str = ""


def _owned(who: Principal, ind: Indicator) -> bool:
    """May ``who`` change ``ind``: every group it covers (all of them, when it names none) is the caller's."""
    groups = who.device_group_ids
    return groups is None or (bool(ind.rbac_group_ids) and set(ind.rbac_group_ids) <= groups)


def _visible(who: Principal, ind: Indicator) -> bool:
    groups = who.device_group_ids
    return groups is None or not ind.rbac_group_ids or bool(set(ind.rbac_group_ids) & groups)


def _listed(record: IndicatorRecord, names: Mapping[int, str]) -> Listed:
    return Listed(record, tuple(names.get(g, str(g)) for g in record.indicator.rbac_group_ids))


def list_indicators(store: Store, who: Principal) -> list[Listed]:
    who.require(Permission.VIEW_DATA_SECOPS)
    with store.begin() as uow:
        names = uow.asr.group_names()
        return [_listed(r, names) for r in uow.asr.indicators() if _visible(who, r.indicator)]


def get_indicator(store: Store, who: Principal, indicator_id: int) -> Listed:
    found = next((i for i in list_indicators(store, who) if i.record.indicator.id == indicator_id), None)
    if found is None:
        raise NotFound(f"no indicator with id {indicator_id}", field="id")
    return found


def parse(body: Mapping[str, Any]) -> tuple[Indicator, list[str] | None]:
    """An indicator from Defender's JSON fields, with its rbacGroupNames (None: not given); InvalidInput naming the
    field otherwise. Group names are resolved on save."""
    def text(name: str, required: bool = False, limit: int = 2048) -> str:
        value = body.get(name)
        if value is None or value == "":
            if required:
                raise InvalidInput(f"{name} is required", field=name)
            return ""
        if not isinstance(value, str):
            raise InvalidInput(f"{name} must be a string", field=name)
        if len(value) > limit:
            raise InvalidInput(f"{name} is longer than {limit} characters", field=name)
        return value.strip()

    kind_text = text("indicatorType", required=True)
    try:
        kind = IndicatorType(kind_text)
    except ValueError:
        raise InvalidInput(f"indicatorType {kind_text!r} is not one of {', '.join(IndicatorType)}",
                           field="indicatorType") from None
    action_text = text("action", required=True)
    legacy = LEGACY_ACTIONS.get(action_text)  # Defender's older names: an action with generateAlert set
    try:
        action = legacy or IndicatorAction(action_text)
    except ValueError:
        raise InvalidInput(f"action {action_text!r} is not one of {', '.join(IndicatorAction)}"
                           f" (or the legacy {', '.join(LEGACY_ACTIONS)})", field="action") from None
    try:
        value = normalize(kind, text("indicatorValue", required=True))
    except ValueError as e:
        raise InvalidInput(str(e), field="indicatorValue") from None
    severity = text("severity", limit=16) or "Informational"
    if severity not in SEVERITIES:
        raise InvalidInput(f"severity {severity!r} is not one of {', '.join(SEVERITIES)}", field="severity")
    expiry = None
    if body.get("expirationTime"):
        raw = text("expirationTime", limit=64)
        try:
            expiry = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(f"expirationTime {raw!r} is not an ISO 8601 time", field="expirationTime") from None
        expiry = expiry if expiry.tzinfo else expiry.replace(tzinfo=UTC)
    alert = body.get("generateAlert", legacy is not None)
    if not isinstance(alert, bool):
        raise InvalidInput("generateAlert must be true or false", field="generateAlert")
    names = body.get("rbacGroupNames")
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) and n for n in names)):
        raise InvalidInput("rbacGroupNames must be a list of device-group names", field="rbacGroupNames")
    recommended = text("recommendedActions", limit=4000)
    ind = Indicator(value, kind, action, text("title", required=True, limit=512), text("description", limit=8000),
                    severity, expiry, (), alert,
                    extra={"RecommendedActions": recommended} if recommended else {})
    return ind, names


def _save(uow: UnitOfWork, clock: Clock, who: Principal, ind: Indicator, names: Sequence[str] | None,
          source: str) -> tuple[Listed, bool, frozenset[int] | None]:
    now = clock.now()
    if ind.expiration_time is not None and ind.expiration_time <= now:
        raise InvalidInput(f"expirationTime {ind.expiration_time.isoformat()} is in the past", field="expirationTime")
    if names is not None:
        ids = []
        for name in names:
            try:
                ids.append(uow.devices.group_id(name, now))
            except StoreNotFound:
                raise InvalidInput(f"rbacGroupNames: no device group named {name!r}", field="rbacGroupNames") from None
        ind = replace(ind, rbac_group_ids=tuple(sorted(set(ids))))
    if who.device_group_ids is not None:
        if not ind.rbac_group_ids:
            raise Forbidden("an indicator for every device group needs access to every device group")
        unseen = [g for g in ind.rbac_group_ids if g not in who.device_group_ids]
        if unseen:
            raise InvalidInput(f"rbacGroupNames: you do not have access to device group(s) {unseen}",
                               field="rbacGroupNames")
    before = next((r for r in uow.asr.indicators() if (r.indicator.indicator_type, r.indicator.indicator_value)
                   == (ind.indicator_type, ind.indicator_value)), None)
    if before is not None and not _owned(who, before.indicator):
        raise Forbidden(f"the {ind.indicator_type} indicator {ind.indicator_value} also covers device groups you do "
                        "not have access to")
    ind_id, created = uow.asr.save_indicator(ind, who.username or who.actor, now)
    names_by_id = uow.asr.group_names()
    record = next(r for r in uow.asr.indicators() if r.indicator.id == ind_id)
    uow.audit.append(AuditRecord(
        who.actor, "indicator.create" if created else "indicator.update", "indicator", str(ind_id),
        before=_audit_view(before.indicator) if before else None, after=_audit_view(record.indicator),
        reason=source or None, source_ip=who.source_ip), now)
    reach = _reach(ind, before.indicator if before else None)
    return _listed(record, names_by_id), created, reach


def _reach(*inds: Indicator | None) -> frozenset[int] | None:
    """The device groups a change to these indicators reaches; None for every group."""
    groups: set[int] = set()
    for ind in inds:
        if ind is not None:
            if not ind.rbac_group_ids:
                return None
            groups |= set(ind.rbac_group_ids)
    return frozenset(groups)


def _union(a: frozenset[int] | None, b: frozenset[int] | None) -> frozenset[int] | None:
    return None if a is None or b is None else a | b


def _audit_view(ind: Indicator) -> dict[str, Any]:
    return {"indicatorType": ind.indicator_type.value, "indicatorValue": ind.indicator_value,
            "action": ind.action.value, "title": ind.title, "severity": ind.severity,
            "expirationTime": ind.expiration_time.isoformat() if ind.expiration_time else None,
            "rbacGroupIds": list(ind.rbac_group_ids), "generateAlert": ind.generate_alert}


def submit(store: Store, clock: Clock, who: Principal, body: Mapping[str, Any]) -> tuple[Listed, bool]:
    """Submit or update one indicator (Defender's POST /api/indicators); True when it is new."""
    who.require(Permission.MANAGE_SECURITY_SETTINGS)
    ind, names = parse(body)
    with store.begin() as uow:
        item, created, reach = _save(uow, clock, who, ind, names, "")
        asr_service.deliver(uow, clock.now(), who, reach)
        return item, created


def import_rows(store: Store, clock: Clock, who: Principal, rows: Sequence[Any], source: str = "import"
                ) -> list[RowResult]:
    """A batch: each valid row saved, each bad row reported with its index and the field at fault (Defender's
    /api/indicators/import answers per row the same way)."""
    who.require(Permission.MANAGE_SECURITY_SETTINGS)
    if len(rows) > MAX_BATCH:
        raise InvalidInput(f"a batch holds at most {MAX_BATCH} indicators, not {len(rows)}", field="Indicators")
    results = []
    reach: frozenset[int] | None = frozenset()
    for i, row in enumerate(rows):
        if isinstance(row, ValueError):  # a CSV line that did not parse
            results.append(RowResult(i, "", error=str(row)))
            continue
        value = str(row.get("indicatorValue", "")) if isinstance(row, Mapping) else ""
        try:
            if isinstance(row, Indicator):
                ind, names, value = row, None, row.indicator_value
            elif isinstance(row, Mapping):
                ind, names = parse(row)
            else:
                raise InvalidInput("each indicator must be a JSON object")
            # One transaction per row: a refused row leaves the others saved.
            with store.begin() as uow:
                listed, created, row_reach = _save(uow, clock, who, ind, names, source)
            reach = _union(reach, row_reach)
            results.append(RowResult(i, value, listed, created))
        except (InvalidInput, Forbidden) as e:
            where = f"{e.field}: " if e.field and not e.message.startswith(e.field) else ""
            results.append(RowResult(i, value, error=where + e.message))
    if reach is None or reach:  # one bundle per device for the whole batch
        with store.begin() as uow:
            asr_service.deliver(uow, clock.now(), who, reach)
    return results


def import_csv(store: Store, clock: Clock, who: Principal, text: str) -> list[RowResult]:
    """Defender's template CSV, each line saved or refused on its own (the error names the line)."""
    who.require(Permission.MANAGE_SECURITY_SETTINGS)
    try:
        parsed = parse_csv(text)
    except ValueError as e:
        raise InvalidInput(str(e), field="csv") from None
    return import_rows(store, clock, who, parsed, source="csv import")


def delete(store: Store, clock: Clock, who: Principal, indicator_id: int) -> None:
    who.require(Permission.MANAGE_SECURITY_SETTINGS)
    now = clock.now()
    with store.begin() as uow:
        gone = next((r for r in uow.asr.indicators() if r.indicator.id == indicator_id
                     and _visible(who, r.indicator)), None)
        if gone is None:
            raise NotFound(f"no indicator with id {indicator_id}", field="id")
        if not _owned(who, gone.indicator):
            raise Forbidden(f"indicator {indicator_id} also covers device groups you do not have access to")
        uow.asr.delete_indicator(indicator_id)
        asr_service.deliver(uow, now, who, _reach(gone.indicator))
        uow.audit.append(AuditRecord(who.actor, "indicator.delete", "indicator", str(indicator_id),
                                     before=_audit_view(gone.indicator), source_ip=who.source_ip), now)


def export_csv(store: Store, who: Principal) -> str:
    return to_csv(item.record.indicator for item in list_indicators(store, who))
