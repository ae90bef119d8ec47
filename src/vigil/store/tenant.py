"""Tenant-wide settings: a small key → JSON value table (permissions mode, deployment ring, …)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from vigil.store.schema import tenant_settings


def get_setting(conn: sa.Connection, key: str, default: Any = None) -> Any:
    row = conn.execute(sa.select(tenant_settings.c.value).where(tenant_settings.c.key == key)).first()
    return default if row is None else row.value


def set_setting(conn: sa.Connection, key: str, value: Any, now: datetime) -> None:
    done = conn.execute(
        tenant_settings.update().where(tenant_settings.c.key == key).values(value=value, updated_at=now)
    )
    if done.rowcount == 0:
        conn.execute(tenant_settings.insert().values(key=key, value=value, updated_at=now))
