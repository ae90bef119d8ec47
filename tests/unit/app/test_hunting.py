"""The hunting service on the memory store, with a real SQLite database as its runner."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any

import pytest

from vigil.app import hunting
from vigil.app.errors import Forbidden, InvalidInput
from vigil.app.memory import MemoryStore
from vigil.app.principal import Principal
from vigil.core.clock import FixedClock
from vigil.core.rbac import Permission
from vigil.hunt.sql import QueryRate

CLOCK = FixedClock(datetime(2026, 12, 7, tzinfo=UTC))


class SqliteRunner:
    dialect = "sqlite"

    def __init__(self) -> None:
        self.conn = sqlite3.connect(":memory:")
        self.conn.execute("CREATE TABLE devices (id TEXT, group_id INTEGER)")
        self.conn.execute('CREATE TABLE "DeviceProcessEvents" ("DeviceId" TEXT, "FileName" TEXT, "Timestamp" TEXT,'
                          ' "AdditionalFields" TEXT)')
        self.conn.executemany("INSERT INTO devices VALUES (?, ?)", [("d1", 1), ("d2", 2)])
        self.conn.executemany('INSERT INTO "DeviceProcessEvents" VALUES (?, ?, ?, ?)', [
            (f"d{1 + i % 2}", f"f{i}", "2026-12-07 10:00:00.000000", '{"k": 1}') for i in range(10)])

    def run(self, sql: str, timeout_s: float) -> tuple[list[str], list[tuple[Any, ...]]]:
        cur = self.conn.execute(sql)
        return [d[0] for d in cur.description], cur.fetchall()


def analyst(*perms: Permission, groups: frozenset[int] | None = None) -> Principal:
    return Principal("user:alice", frozenset(perms), groups, username="alice")


def test_a_scoped_analyst_gets_defenders_shape_only_for_their_groups_and_the_run_is_audited() -> None:
    store = MemoryStore()
    r = hunting.run_query(store, SqliteRunner(), CLOCK, analyst(Permission.VIEW_DATA_SECOPS, groups=frozenset({1})),
                          "SELECT DeviceId, Timestamp, AdditionalFields FROM DeviceProcessEvents")
    assert r.schema == [{"Name": "DeviceId", "Type": "String"}, {"Name": "Timestamp", "Type": "DateTime"},
                        {"Name": "AdditionalFields", "Type": "Dynamic"}]
    assert len(r.results) == 5 and {x["DeviceId"] for x in r.results} == {"d1"}
    assert r.results[0]["Timestamp"] == "2026-12-07T10:00:00Z" and r.results[0]["AdditionalFields"] == {"k": 1}
    [entry] = store.state.audit
    assert entry.action == "hunt.run" and entry.actor == "user:alice" and entry.after["rows"] == 5


def test_the_row_quota_truncates() -> None:
    r = hunting.run_query(MemoryStore(), SqliteRunner(), CLOCK, analyst(Permission.VIEW_DATA_SECOPS),
                          "SELECT * FROM DeviceProcessEvents", max_rows=3)
    assert len(r.results) == 3 and r.truncated


def test_without_the_permission_the_query_is_refused_and_nothing_is_audited() -> None:
    store = MemoryStore()
    with pytest.raises(Forbidden):
        hunting.run_query(store, SqliteRunner(), CLOCK, analyst(Permission.VIEW_PLAN_REPORTS), "SELECT 1")
    assert store.state.audit == []


def test_a_bad_query_is_invalid_input_naming_the_query_field() -> None:
    with pytest.raises(InvalidInput) as e:
        hunting.run_query(MemoryStore(), SqliteRunner(), CLOCK, analyst(Permission.VIEW_DATA_SECOPS),
                          "DROP TABLE DeviceProcessEvents")
    assert e.value.field == "Query" and "only SELECT" in e.value.message


def test_queries_per_minute_per_user_are_capped() -> None:
    t = [0.0]
    rate = QueryRate(2, lambda: t[0])
    who = analyst(Permission.VIEW_DATA_SECOPS)
    for _ in range(2):
        hunting.run_query(MemoryStore(), SqliteRunner(), CLOCK, who, "SELECT 1 AS x", rate=rate)
    with pytest.raises(hunting.TooManyQueries):
        hunting.run_query(MemoryStore(), SqliteRunner(), CLOCK, who, "SELECT 1 AS x", rate=rate)
    hunting.run_query(MemoryStore(), SqliteRunner(), CLOCK, Principal("user:bob", who.permissions,
                                                                 username="bob"), "SELECT 1 AS x", rate=rate)
    t[0] = 61.0
    hunting.run_query(MemoryStore(), SqliteRunner(), CLOCK, who, "SELECT 1 AS x", rate=rate)
