"""Device groups by their ASCII spelling, on SQLite and PostgreSQL: "Ring - Pilot" is the plan's "Ring – Pilot"
everywhere a group is named (look-up, change, delete), and never a second group beside it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from vigil.store import db
from vigil.store.devices import group_id_by_name
from vigil.store.errors import NotFound
from vigil.store.groups import delete_group, get_group, put_group
from vigil.store.rbac import RbacError
from vigil.store.schema import device_groups

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_group_is_found_changed_and_deleted_by_its_ascii_name(db_url: str, tmp_path: Path) -> None:
    engine = db.make_engine(db_url or f"sqlite:///{tmp_path / 'n.db'}")
    try:
        db.upgrade(engine)
        with engine.begin() as conn:
            gid, _ = put_group(conn, "Ring – Pilot", now=T0)
            put_group(conn, "Ring – Full", now=T0)
            assert group_id_by_name(conn, "Ring - Pilot", T0) == gid
            assert group_id_by_name(conn, "ring  -  pilot", T0) == gid
            found = get_group(conn, "Ring - Pilot")
            assert found is not None and found.name == "Ring – Pilot"
            again, _ = put_group(conn, "Ring - Pilot", now=T0, description="the pilot ring")
            assert again == gid
            names = list(conn.execute(sa.select(device_groups.c.name).order_by(device_groups.c.name)).scalars())
            assert names.count("Ring - Pilot") == 0 and "Ring – Pilot" in names
            with pytest.raises(NotFound, match="'Ring - Nowhere'"):
                group_id_by_name(conn, "Ring - Nowhere", T0)
            delete_group(conn, "Ring - Full")
            assert get_group(conn, "Ring – Full") is None
            with pytest.raises(RbacError):
                delete_group(conn, "Ring - Full")
    finally:
        engine.dispose()
