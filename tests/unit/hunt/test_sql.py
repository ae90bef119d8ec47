"""vigil.hunt.sql: the checks, the scope rewrite and the quota, run on a real SQLite database."""

from __future__ import annotations

import sqlite3

import pytest

from vigil.hunt.sql import HuntError, Scope, check


@pytest.fixture()
def db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute('CREATE TABLE devices (id TEXT, group_id INTEGER)')
    conn.execute('CREATE TABLE users (name TEXT)')
    conn.execute("INSERT INTO users VALUES ('secret')")
    conn.execute('CREATE TABLE "DeviceProcessEvents" ("DeviceId" TEXT, "FileName" TEXT, "Timestamp" TEXT)')
    conn.execute('CREATE TABLE "DeviceFileEvents" ("DeviceId" TEXT, "FileName" TEXT, "Timestamp" TEXT)')
    conn.executemany("INSERT INTO devices VALUES (?, ?)", [("d1", 1), ("d2", 2)])
    for dev in ("d1", "d2"):
        conn.execute('INSERT INTO "DeviceProcessEvents" VALUES (?, ?, ?)', (dev, f"bash-{dev}", "2026-12-07"))
        conn.execute('INSERT INTO "DeviceFileEvents" VALUES (?, ?, ?)', (dev, f"file-{dev}", "2026-12-07"))
    return conn


MINE = Scope(frozenset({1}))


def run(db: sqlite3.Connection, query: str, scope: Scope = MINE, max_rows: int = 100) -> list[tuple[object, ...]]:
    return db.execute(check(query, scope, "sqlite", max_rows).sql).fetchall()


@pytest.mark.parametrize("query", [
    "SELECT DeviceId FROM DeviceProcessEvents",
    "select p.DeviceId from DeviceFileEvents f join DeviceProcessEvents p on 1=1",
    "SELECT DeviceId FROM (SELECT * FROM DeviceProcessEvents) t",
    "SELECT DeviceId FROM DeviceFileEvents WHERE DeviceId IN (SELECT DeviceId FROM DeviceProcessEvents)",
    "WITH x AS (SELECT * FROM DeviceProcessEvents) SELECT DeviceId FROM x",
    "WITH x AS (SELECT * FROM DeviceProcessEvents), y AS (SELECT * FROM x) SELECT DeviceId FROM y",
    "SELECT DeviceId FROM DeviceProcessEvents UNION SELECT DeviceId FROM DeviceFileEvents",
    "SELECT (SELECT max(DeviceId) FROM DeviceFileEvents) AS DeviceId",
])
def test_a_scoped_caller_sees_only_their_groups_however_the_query_is_built(db, query):
    rows = run(db, query)
    assert rows and {r[0] for r in rows} == {"d1"}
    assert {r[0] for r in run(db, query, Scope(None))} == {"d1", "d2"} or "max" in query


def test_no_groups_sees_nothing(db):
    assert run(db, "SELECT * FROM DeviceProcessEvents", Scope(frozenset())) == []


@pytest.mark.parametrize(("query", "needle"), [
    ("DELETE FROM DeviceProcessEvents", "only SELECT"),
    ("INSERT INTO DeviceProcessEvents VALUES (1)", "only SELECT"),
    ("UPDATE DeviceProcessEvents SET FileName = 'x'", "only SELECT"),
    ("DROP TABLE DeviceProcessEvents", "only SELECT"),
    ("ATTACH DATABASE '/tmp/x.db' AS x", "only SELECT"),
    ("PRAGMA table_info(devices)", "only SELECT"),
    ("SELECT 1; DELETE FROM devices", "one statement"),
    ("SELECT * FROM sqlite_master", "unknown table 'sqlite_master'"),
    ("SELECT * FROM users", "unknown table 'users'"),
    ("SELECT * FROM devices", "unknown table 'devices'"),
    ("SELECT * FROM main.DeviceProcessEvents", "schema-qualified"),
    ("SELECT load_extension('/tmp/evil')", "load_extension() is not allowed"),
    ("SELECT readfile('/etc/passwd')", "readfile() is not allowed"),
    ("SELECT pg_read_file('/etc/passwd')", "pg_read_file() is not allowed"),
    ("SELECT * FROM pragma_table_info('devices')", "not allowed"),
    ("SELECT * INTO stolen FROM DeviceProcessEvents", "INTO"),
    ("WITH DeviceProcessEvents AS (SELECT 'd2' AS DeviceId) SELECT * FROM DeviceProcessEvents", "shadows a table"),
    ("WITH devices AS (SELECT 'd2' AS id, 1 AS group_id) SELECT * FROM DeviceProcessEvents", "shadows a table"),
    ("WITH a AS (SELECT * FROM users), users AS (SELECT 1) SELECT * FROM a", "unknown table 'users'"),
    ("SELECT DeviceId FROM DeviceProcessEvents UNION SELECT name FROM users", "unknown"),
    ("SELECT Nope FROM DeviceProcessEvents", "unknown column 'Nope'"),
    ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n FROM r", "RECURSIVE"),
    ("SELECT * FROM DeviceProcessEvents LIMIT ?", "parameter"),
    ("SELEC * FROM x", "syntax error"),
    ("", "empty"),
])
def test_escape_and_write_attempts_are_refused_naming_the_problem(query, needle):
    with pytest.raises(HuntError) as e:
        check(query, MINE, "sqlite")
    assert needle.lower() in str(e.value).lower()


def test_errors_name_the_position():
    with pytest.raises(HuntError) as e:
        check("SELECT *\nFROM Nowhere", MINE)
    assert e.value.where == "line 2, column 12"


def test_the_row_quota_caps_the_limit(db):
    assert check("SELECT * FROM DeviceProcessEvents", MINE, max_rows=10).limit == 11
    assert check("SELECT * FROM DeviceProcessEvents LIMIT 3", MINE, max_rows=10).limit == 3
    assert check("SELECT * FROM DeviceProcessEvents LIMIT 500", MINE, max_rows=10).limit == 11
    assert len(run(db, "SELECT * FROM DeviceProcessEvents", Scope(None), max_rows=0)) == 1


def test_postgres_output_quotes_declared_names():
    sql = check("select filename from deviceprocessevents p where p.DEVICEID = 'd1'", MINE, "postgres").sql
    assert '"DeviceProcessEvents"' in sql and '"p"."DeviceId"' in sql and '"FileName"' in sql


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_comments_do_not_survive_into_the_sql_that_runs(dialect):
    for q in ["SELECT DeviceId FROM DeviceProcessEvents -- */ UNION SELECT id FROM devices /*",
              "SELECT DeviceId /* a /* b */ */ FROM DeviceProcessEvents"]:
        try:
            sql = check(q, MINE, dialect).sql
        except HuntError:
            continue
        assert "/*" not in sql and "--" not in sql
