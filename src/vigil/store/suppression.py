"""Suppression rule records."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from vigil.core.suppression import (
    SuppressionAction,
    SuppressionRule,
    SuppressionScope,
    parse_conditions,
)
from vigil.store.schema import suppression_rules


def _rule(row: Any) -> SuppressionRule:
    return SuppressionRule(
        id=row.id, alert_title=row.alert_title, scope=SuppressionScope(row.scope),
        action=SuppressionAction(row.action), conditions=parse_conditions(row.conditions),
        machine_id=row.machine_id, enabled=row.enabled,
    )


def rules_for_title(conn: sa.Connection, title: str) -> list[SuppressionRule]:
    rows = conn.execute(
        sa.select(suppression_rules)
        .where(suppression_rules.c.alert_title == title, suppression_rules.c.enabled.is_(True))
        .order_by(suppression_rules.c.id)
    )
    return [_rule(r) for r in rows]


def create(
    conn: sa.Connection, *, title: str, scope: SuppressionScope, action: SuppressionAction,
    conditions: dict[str, str], machine_id: str | None, comment: str, who: str, now: datetime,
) -> int:
    parse_conditions(conditions)  # refuse a malformed rule before it is stored
    res = conn.execute(
        suppression_rules.insert().values(
            alert_title=title, scope=scope.value, action=action.value, conditions=conditions,
            machine_id=machine_id, enabled=True, comment=comment, created_by=who, created_at=now, hits=0,
        )
    )
    return int(res.inserted_primary_key[0])  # type: ignore[index]


def count_hit(conn: sa.Connection, rule_id: int) -> None:
    conn.execute(
        suppression_rules.update().where(suppression_rules.c.id == rule_id)
        .values(hits=suppression_rules.c.hits + 1)
    )


def listing(conn: sa.Connection) -> list[sa.Row[Any]]:
    return list(conn.execute(sa.select(suppression_rules).order_by(suppression_rules.c.id)))


def set_enabled(conn: sa.Connection, rule_id: int, enabled: bool) -> bool:
    res = conn.execute(
        suppression_rules.update().where(suppression_rules.c.id == rule_id).values(enabled=enabled)
    )
    return res.rowcount == 1


def delete(conn: sa.Connection, rule_id: int) -> bool:
    return conn.execute(suppression_rules.delete().where(suppression_rules.c.id == rule_id)).rowcount == 1
