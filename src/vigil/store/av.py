"""Antivirus policies per device group (the ``av_policies`` table; group NULL is the tenant default)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from vigil.app.ports import AvPolicyRecord
from vigil.store.devices import aware
from vigil.store.schema import av_policies


def policies(conn: sa.Connection) -> list[AvPolicyRecord]:
    rows = conn.execute(sa.select(av_policies))
    out = [AvPolicyRecord(None if r.group_id is None else int(r.group_id), dict(r.policy), r.updated_by,
                          aware(r.updated_at), int(r.version)) for r in rows]
    return sorted(out, key=lambda p: -1 if p.group_id is None else p.group_id)


def save_policy(conn: sa.Connection, group_id: int | None, policy: dict[str, Any], who: str, now: datetime) -> int:
    """Replace the policy of ``group_id`` (None: the tenant default); returns its new version."""
    where = av_policies.c.group_id.is_(None) if group_id is None else av_policies.c.group_id == group_id
    found = conn.execute(sa.select(av_policies.c.id, av_policies.c.version).where(where)).first()
    values = {"policy": dict(policy), "updated_by": who, "updated_at": now}
    if found is not None:
        version = int(found.version) + 1
        conn.execute(av_policies.update().where(av_policies.c.id == found.id).values(version=version, **values))
        return version
    conn.execute(av_policies.insert().values(group_id=group_id, version=1, **values))
    return 1
