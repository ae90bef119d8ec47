"""Indicator rows (the ``indicators`` table) and ASR policies (tenant settings ``asr.policy.*``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from vigil.asr import AsrPolicy
from vigil.asr.indicators import Indicator, IndicatorAction, IndicatorType
from vigil.store import tenant
from vigil.store.devices import aware
from vigil.store.schema import device_groups, indicators, tenant_settings

_POLICY_KEY = "asr.policy."  # + "default" or the device group's id


def _indicator(row: Any) -> Indicator:
    return Indicator(
        row.indicator_value, IndicatorType(row.indicator_type), IndicatorAction(row.action), row.title,
        row.description or "", row.severity, aware(row.expiration_time) if row.expiration_time else None,
        tuple(int(g) for g in row.rbac_group_ids or ()), bool(row.generate_alert), id=int(row.id),
        extra={"RecommendedActions": row.recommended_actions} if row.recommended_actions else {},
    )


def listing(conn: sa.Connection) -> list[tuple[Indicator, Any]]:
    """Every indicator by id, with its row (for who made and changed it, and when)."""
    return [(_indicator(r), r) for r in conn.execute(sa.select(indicators).order_by(indicators.c.id))]


def save(conn: sa.Connection, ind: Indicator, who: str, now: datetime) -> tuple[int, bool]:
    """Submit or update: an indicator of the same type and value is replaced (Defender's semantics); returns its
    id and whether it is new."""
    values = {
        "action": ind.action.value, "title": ind.title, "description": ind.description, "severity": ind.severity,
        "expiration_time": ind.expiration_time, "rbac_group_ids": list(ind.rbac_group_ids),
        "generate_alert": ind.generate_alert, "recommended_actions": ind.extra.get("RecommendedActions", ""),
        "last_updated_by": who, "last_update_time": now,
    }
    found = conn.execute(sa.select(indicators.c.id).where(
        indicators.c.indicator_type == ind.indicator_type.value, indicators.c.indicator_value == ind.indicator_value,
    )).first()
    if found is not None:
        conn.execute(indicators.update().where(indicators.c.id == found.id).values(**values))
        return int(found.id), False
    res = conn.execute(indicators.insert().values(
        indicator_value=ind.indicator_value, indicator_type=ind.indicator_type.value, application="",
        created_by=who, creation_time=now, **values,
    ))
    return int(res.inserted_primary_key[0]), True  # type: ignore[index]


def delete(conn: sa.Connection, indicator_id: int) -> bool:
    return conn.execute(indicators.delete().where(indicators.c.id == indicator_id)).rowcount == 1


def group_names(conn: sa.Connection) -> dict[int, str]:
    return {int(r.id): r.name for r in conn.execute(sa.select(device_groups.c.id, device_groups.c.name))}


def _policy_key(group_id: int | None) -> str:
    return _POLICY_KEY + ("default" if group_id is None else str(group_id))


def policies(conn: sa.Connection) -> list[tuple[int | None, AsrPolicy, dict[str, Any]]]:
    """(group id or None for the tenant default, policy, {"updatedBy", "updateTime", "version"}) of each stored
    policy, the default first."""
    rows = conn.execute(sa.select(tenant_settings).where(tenant_settings.c.key.startswith(_POLICY_KEY)))
    out: list[tuple[int | None, AsrPolicy, dict[str, Any]]] = []
    for r in rows:
        tail = r.key[len(_POLICY_KEY):]
        group = None if tail == "default" else int(tail)
        meta = {"updatedBy": r.value.get("updatedBy", ""), "updateTime": aware(r.updated_at),
                "version": int(r.value.get("version", 1))}
        out.append((group, AsrPolicy.from_json(r.value["policy"]), meta))
    return sorted(out, key=lambda p: -1 if p[0] is None else p[0])


def save_policy(conn: sa.Connection, group_id: int | None, policy: AsrPolicy, who: str, now: datetime) -> int:
    """Store the policy of ``group_id`` (None: the tenant default); returns its new version."""
    before = tenant.get_setting(conn, _policy_key(group_id))
    version = int(before.get("version", 0)) + 1 if before else 1
    tenant.set_setting(conn, _policy_key(group_id), {"policy": policy.to_json(), "updatedBy": who,
                                                     "version": version}, now)
    return version


def delete_policy(conn: sa.Connection, group_id: int | None) -> bool:
    return conn.execute(tenant_settings.delete().where(tenant_settings.c.key == _policy_key(group_id))).rowcount == 1
