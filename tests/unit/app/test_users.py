"""The user service on the fake, SQLite and PostgreSQL: add, list, disable/enable, reset a password; each checked
and audited; an administrator still reaches a disabled account."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from vigil.app import users as app_users
from vigil.app.errors import Forbidden, InvalidInput, NotFound
from vigil.app.memory import MemoryStore
from vigil.app.ports import Store
from vigil.app.principal import Principal, local_cli
from vigil.app.stores import open_engine, sql_store
from vigil.core.clock import FixedClock
from vigil.core.rbac import Permission
from vigil.server.password_strength import password_policy

POLICY = password_policy("Vigil")
PASSWORD = "a long enough passphrase 77"
CLOCK = FixedClock(datetime(2026, 12, 7, 12, 0, tzinfo=UTC))


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    url = f"sqlite:///{tmp_path / 'u.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_database")
    engine = open_engine(url, migrate=True)
    try:
        yield sql_store(engine)
    finally:
        engine.dispose()


def _audit(store: Store) -> list[tuple[str, str]]:
    with store.begin() as uow:
        return [(e.entry.action, e.entry.target_id) for e in uow.audit.log(None, 100)]


def test_add_list_disable_enable_and_reset(store: Store) -> None:
    who = local_cli("ops@host")
    made = app_users.add_user(store, CLOCK, who, POLICY, "carol", PASSWORD, "full-access", "carol@corp.example")
    assert (made.username, made.role, made.disabled, made.source) == ("carol", "full-access", False, "local")
    with pytest.raises(InvalidInput, match="already exists"):
        app_users.add_user(store, CLOCK, who, POLICY, "carol", PASSWORD)
    with pytest.raises(InvalidInput, match="password: ") as weak:
        app_users.add_user(store, CLOCK, who, POLICY, "dave", "password")
    assert weak.value.field == "password"
    with pytest.raises(InvalidInput, match="role: use one of"):
        app_users.add_user(store, CLOCK, who, POLICY, "dave", PASSWORD, "root")
    with pytest.raises(InvalidInput, match="username"):
        app_users.add_user(store, CLOCK, who, POLICY, "da ve", PASSWORD)

    assert "carol" in [u.username for u in app_users.list_users(store, who)]
    off = app_users.set_disabled(store, CLOCK, who, "carol", True)
    assert off.disabled
    with store.begin() as uow:
        assert uow.users.access("carol") is None  # a disabled account has no rights
    assert [u.disabled for u in app_users.list_users(store, who) if u.username == "carol"] == [True]
    assert not app_users.set_disabled(store, CLOCK, who, "carol", False).disabled  # reachable to enable it
    with pytest.raises(NotFound):
        app_users.set_disabled(store, CLOCK, who, "nobody", True)
    app_users.reset_password(store, CLOCK, who, POLICY, "carol", "quite another passphrase 88")
    with pytest.raises(InvalidInput, match="password: "):
        app_users.reset_password(store, CLOCK, who, POLICY, "carol", "short")
    with pytest.raises(NotFound):
        app_users.reset_password(store, CLOCK, who, POLICY, "nobody", PASSWORD)
    # Only what succeeded is audited: the refused add and reset left nothing.
    assert sorted(a for a, target in _audit(store) if target == "carol") == [
        "user.create", "user.password_reset", "user.update", "user.update"]


def test_only_an_administrator_manages_users(store: Store) -> None:
    analyst = Principal("alice", frozenset({Permission.VIEW_DATA_SECOPS, Permission.ALERTS_INVESTIGATION}), None,
                        username="alice")
    with pytest.raises(Forbidden):
        app_users.list_users(store, analyst)
    with pytest.raises(Forbidden):
        app_users.add_user(store, CLOCK, analyst, POLICY, "eve", PASSWORD)
    me = Principal("root-admin", frozenset(Permission), None, is_admin=True, username="root-admin")
    with pytest.raises(InvalidInput, match="your own account"):
        app_users.set_disabled(store, CLOCK, me, "root-admin", True)
