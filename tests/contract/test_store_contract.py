"""One contract for the store ports, run on SQLite, PostgreSQL and the in-memory fake."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from vigil.app.memory import MemoryStore
from vigil.app.ports import AuditRecord, Store
from vigil.app.stores import open_engine, sql_store
from vigil.core.devices import DEFAULT_GROUP_NAME
from vigil.store.errors import NotFound

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    url = f"sqlite:///{tmp_path / 'c.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_database")
    engine = open_engine(url, migrate=True)
    try:
        yield sql_store(engine)
    finally:
        engine.dispose()


def test_the_default_group_exists_and_an_unknown_one_raises(store: Store) -> None:
    with store.begin() as uow:
        assert uow.devices.group_id(None, NOW) == uow.devices.group_id(DEFAULT_GROUP_NAME, NOW)
        with pytest.raises(NotFound):
            uow.devices.group_id("no such group", NOW)


def test_a_token_is_issued_for_its_group_and_bad_values_are_refused(store: Store) -> None:
    with store.begin() as uow:
        t = uow.enrollment.issue(group=None, expires_at=NOW + timedelta(days=1), max_uses=2, created_by="x", now=NOW)
        assert (t.group, t.max_uses) == (DEFAULT_GROUP_NAME, 2) and t.token.startswith("vge_")
        with pytest.raises(ValueError):
            uow.enrollment.issue(group=None, expires_at=NOW, max_uses=1, created_by="x", now=NOW)


def test_audit_records_commit_with_the_unit_of_work_and_roll_back_with_it(store: Store) -> None:
    with store.begin() as uow:
        uow.audit.append(AuditRecord("cli:op@host", "device.offboard", "device", "d1", reason="why"), NOW)
    with pytest.raises(RuntimeError), store.begin() as uow:
        uow.audit.append(AuditRecord("ana", "device.offboard", "device", "d2"), NOW)
        raise RuntimeError("refused")
    with store.begin() as uow:
        got = [(r.actor, r.target_id, r.reason) for r in uow.audit.entries("device.offboard")]
    assert got == [("cli:op@host", "d1", "why")]


def test_no_plan_means_no_gate_and_unknown_devices_are_none(store: Store) -> None:
    with store.begin() as uow:
        assert uow.plan.gate() is None
        assert uow.devices.get("f" * 40) is None and uow.devices.find("f" * 40) == []
        assert list(uow.devices.in_groups(None)) == [] and uow.devices.offboard("f" * 40, NOW) is False


def test_an_unknown_user_has_no_access(store: Store) -> None:
    with store.begin() as uow:
        assert uow.users.access("nobody-by-this-name") is None
