"""Reported identity changes in the store, on SQLite and PostgreSQL: held, deduplicated, decided, trusted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from vigil.core.identity import ChangeStatus
from vigil.store import audit, db
from vigil.store import identity as identity_store
from vigil.store.devices import issue_token, redeem_token, register_device
from vigil.store.groups import put_group
from vigil.store.schema import alerts, device_groups, devices

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ADMIN = audit.Change("admin", "", "device", "", source_ip="192.0.2.7")


def _group_of(conn: sa.Connection, did: str) -> str:
    return str(conn.execute(sa.select(device_groups.c.name).join(devices, devices.c.group_id == device_groups.c.id)
                            .where(devices.c.id == did)).scalar_one())


def test_reported_changes_wait_for_review_unless_the_group_trusts_them(db_url: str, tmp_path: Path) -> None:
    engine = db.make_engine(db_url or f"sqlite:///{tmp_path / 'i.db'}")
    try:
        db.upgrade(engine)
        with engine.begin() as conn:
            put_group(conn, "Win", now=T0, rules=[{"property": "os", "operator": "equals", "value": "Windows"}])
            put_group(conn, "Web", now=T0, rules=[{"property": "name", "operator": "startsWith", "value": "web"}])
            tok = issue_token(conn, group=None, expires_at=T0 + timedelta(days=1), max_uses=1, created_by="t", now=T0)
            token_id, gid = redeem_token(conn, tok.token, T0)
            did, _ = register_device(conn, token_id=token_id, group_id=gid, hostname="web-01", os_platform="Linux",
                                     os_version="12", agent_version="1", machine_id="m", ip=None, now=T0)
            identity_store.report_device(conn, did, T0, {"computer_dns_name": "web-01", "os_platform": "Linux",
                                                         "agent_tags": ["a"]})
            assert _group_of(conn, did) == "Web"
            # The OS is matched by rules too: claiming Windows must not move the device either.
            for i, os_ in enumerate(["Windows", "Windows", "Linux", "Windows"], start=1):
                moves = identity_store.report_device(conn, did, T0 + timedelta(minutes=i), {
                    "computer_dns_name": "web-01", "os_platform": os_, "agent_tags": ["a"], "os_version": "11"})
                assert moves == []
            assert _group_of(conn, did) == "Web"
            assert conn.execute(sa.select(devices.c.os_version).where(devices.c.id == did)).scalar_one() == "11"
            [ch] = identity_store.list_changes(conn, did)
            # Windows, the same again, back to Linux (nothing left to apply), Windows again: 4 reports, 3 revisions.
            assert (ch.status, ch.reports, ch.revision, ch.after.os_platform) == (ChangeStatus.PENDING, 4, 3, "Windows")
            assert len(audit.entries(conn, action="device.identity_reported")) == 1
            assert conn.execute(sa.select(sa.func.count()).select_from(alerts)).scalar_one() == 1
            with pytest.raises(identity_store.ChangeRefused):
                identity_store.decide_change(conn, did, ch.id, accept=True, revision=2, who=ADMIN, now=T0)
            decided, moves = identity_store.decide_change(conn, did, ch.id, accept=True, revision=3, who=ADMIN, now=T0)
            assert decided.status is ChangeStatus.ACCEPTED and decided.decided_by == "admin"
            assert _group_of(conn, did) == "Win" and moves
            [entry] = audit.entries(conn, action="device.identity_accept")
            assert entry[0].source_ip == "192.0.2.7"
            conn.execute(device_groups.update().where(device_groups.c.name == "Win")
                         .values(trust_reported_identity=True))
            identity_store.report_device(conn, did, T0 + timedelta(hours=1), {"os_platform": "Linux"})
            assert _group_of(conn, did) == "Web"
            assert identity_store.list_changes(conn, did)[0].status is ChangeStatus.APPLIED
            assert audit.verify(conn).ok
    finally:
        engine.dispose()
