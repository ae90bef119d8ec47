"""Personas: the built-in read-only Stakeholder role, and temporary role assignments that expire on time."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from tests.integration.server.rbac_support import admin, make_user, token_of
from tests.support import VigilServer
from tests.unit.core.test_plan import complete
from vigil.core.rbac import STAKEHOLDER_ROLE_NAME, BasicRole, Permission
from vigil.store import db, rbac
from vigil.store.users import create_user

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


@pytest.fixture()
def conn(db_url: str, tmp_path: Path) -> Iterator[sa.Connection]:
    engine = db.make_engine(db_url or f"sqlite:///{tmp_path / 'p.db'}")
    db.upgrade(engine)
    try:
        with engine.begin() as c:
            yield c
    finally:
        engine.dispose()


def test_a_temporary_role_assignment_stops_counting_at_its_expiry(conn: sa.Connection) -> None:
    rbac.put_role(conn, "Deployment helper", "", frozenset({Permission.MANAGE_SECURITY_SETTINGS}), ["helpers"], T0)
    rbac.put_role(conn, "Readers", "", frozenset({Permission.VIEW_DATA_SECOPS}), ["readers"], T0)
    rbac.switch_to_rbac(conn, T0)
    user = create_user(conn, "tess", "a long enough passphrase 42", BasicRole.READ_ONLY, T0)
    expiry = T0 + timedelta(days=14)
    rbac.add_member(conn, "helpers", user.id, T0, expires_at=expiry)
    rbac.add_member(conn, "readers", user.id, T0)  # for good
    before = rbac.access_for(conn, user, expiry - timedelta(seconds=1))
    assert before.permissions == {Permission.MANAGE_SECURITY_SETTINGS, Permission.VIEW_DATA_SECOPS}
    after = rbac.access_for(conn, user, expiry)
    assert after.permissions == {Permission.VIEW_DATA_SECOPS}
    assert rbac.members(conn, "helpers", expiry - timedelta(seconds=1)) == [user.id]
    assert rbac.members(conn, "helpers", expiry) == []
    assert rbac.membership_expiry(conn, "helpers", user.id) == expiry
    with pytest.raises(rbac.RbacError, match="expire in the future"):
        rbac.add_member(conn, "helpers", user.id, expiry, expires_at=expiry)
    # Made permanent again: no expiry.
    rbac.add_member(conn, "helpers", user.id, T0)
    assert Permission.MANAGE_SECURITY_SETTINGS in rbac.access_for(conn, user, T0 + timedelta(days=365)).permissions


def test_the_builtin_stakeholder_role_is_read_only_and_grants_no_admin(conn: sa.Connection) -> None:
    rbac.switch_to_rbac(conn, T0)
    role = rbac.role_by_name(conn, STAKEHOLDER_ROLE_NAME)
    assert role is not None and role.builtin and role.permissions == {Permission.VIEW_PLAN_REPORTS}
    with pytest.raises(rbac.RbacError, match="read-only"):
        rbac.put_role(conn, STAKEHOLDER_ROLE_NAME, "", frozenset({Permission.VIEW_DATA_SECOPS}), ["x"], T0)
    rbac.put_role(conn, STAKEHOLDER_ROLE_NAME, "Business owners", frozenset({Permission.VIEW_PLAN_REPORTS}),
                  ["business-stakeholders"], T0)
    user = create_user(conn, "olga", "a long enough passphrase 42", BasicRole.READ_ONLY, T0)
    rbac.add_member(conn, "business-stakeholders", user.id, T0)
    access = rbac.access_for(conn, user, T0)
    # A built-in role, but not the administrator's: only its own permission, and no device group.
    assert access.permissions == {Permission.VIEW_PLAN_REPORTS}
    with pytest.raises(rbac.RbacError, match="cannot be deleted"):
        rbac.delete_role(conn, STAKEHOLDER_ROLE_NAME)


def test_a_stakeholder_sees_the_plan_and_counts_but_no_device_data(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    with admin(server) as c:
        c.post("/api/plan/init", json={"organization": "ACME"})
        c.put("/api/plan", json={"document": yaml.safe_dump(complete(), sort_keys=False, allow_unicode=True)})
        assert "+ role 'Stakeholder'" in c.post("/api/plan/apply").json()["changes"]
        assert c.post("/api/plan/apply").json()["changes"] == []  # the built-in role now matches the plan
    make_user(server, "olga", groups=("business-stakeholders",))
    with server.client(token_of(server, "olga")) as c:
        st = c.get("/api/plan").json()
        assert st["exists"] and st["deviceDataHidden"] is True
        assert all(k["failing"] == [] for k in st["ringCriteria"])
        assert "Business Owner" in c.get("/api/plan/export", params={"format": "md"}).text
        for path in ("/api/machines", "/api/alerts", "/api/audit"):
            assert c.get(path).status_code == 403, path
        assert c.put("/api/plan", json={"document": "x: 1"}).status_code == 403
    with admin(server) as c:
        r = c.put("/api/roles/Stakeholder", json={"permissions": ["Alerts investigation"],
                                                  "userGroups": ["business-stakeholders"]})
        assert r.status_code == 409 and "read-only" in r.json()["detail"]
        past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        r = c.put("/api/usergroups/endpoint-admins/members/olga", json={"expiresAt": past})
        assert r.status_code == 422 and r.json()["field"] == "expiresAt"
        soon = (datetime.now(UTC) + timedelta(days=7)).replace(microsecond=0)
        r = c.put("/api/usergroups/endpoint-admins/members/olga", json={"expiresAt": soon.isoformat()})
        assert r.status_code == 200 and r.json()["expiresAt"] == soon.isoformat()
        entry = c.get("/api/audit", params={"action": "user_group.add_member"}).json()["value"][0]
        assert entry["after"] == {"user": "olga", "expires_at": soon.isoformat()}
    with server.client(token_of(server, "olga")) as c:
        assert c.get("/api/machines").status_code == 200  # the temporary Endpoint administrator role, in force
        assert c.get("/api/plan").json()["deviceDataHidden"] is False
