"""The KQL subset: each construct translated and run, after the SQL checks, on a real SQLite database."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest

from vigil.hunt.kql import looks_like_kql, to_sql
from vigil.hunt.sql import HuntError, Scope, check

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.fixture()
def db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE devices (id TEXT, group_id INTEGER)")
    conn.executemany("INSERT INTO devices VALUES (?, ?)", [("d1", 1), ("d2", 2)])
    conn.execute('CREATE TABLE "DeviceProcessEvents" ("DeviceId" TEXT, "DeviceName" TEXT, "FileName" TEXT,'
                 ' "ProcessCommandLine" TEXT, "ProcessId" INTEGER, "Timestamp" TEXT)')
    rows = [("d1", "web", "curl", "curl http://x/a_b", 1, "2026-12-07 11:00:00.000000"),
            ("d1", "web", "bash", "bash -c id", 2, "2026-12-01 11:00:00.000000"),
            ("d2", "db", "curl", "curl https://y", 3, "2026-12-07 11:30:00.000000"),
            ("d2", "db", "LS", "ls -la", 4, "2026-12-07 11:45:00.000000")]
    conn.executemany('INSERT INTO "DeviceProcessEvents" VALUES (?, ?, ?, ?, ?, ?)', rows)
    return conn


def run(db: sqlite3.Connection, kql: str, scope: Scope = Scope(None)) -> list[tuple[object, ...]]:
    return db.execute(check(to_sql(kql, NOW), scope, "sqlite").sql).fetchall()


T = "DeviceProcessEvents"


@pytest.mark.parametrize(("kql", "expected"), [
    (f"{T} | where FileName == 'curl' | project ProcessId | order by ProcessId asc", [(1,), (3,)]),
    (f"{T} | where FileName != 'curl' | project ProcessId | order by ProcessId asc", [(2,), (4,)]),
    (f"{T} | where ProcessCommandLine has 'HTTPS' | project ProcessId", [(3,)]),
    (f"{T} | where ProcessCommandLine contains 'a_b' | project ProcessId", [(1,)]),
    (f"{T} | where ProcessCommandLine contains 'a%b' | project ProcessId", []),
    (f"{T} | where FileName startswith 'l' | project ProcessId", [(4,)]),
    (f"{T} | where ProcessCommandLine endswith 'ID' | project ProcessId", [(2,)]),
    (f"{T} | where ProcessId in (1, 4) | project ProcessId | order by ProcessId asc", [(1,), (4,)]),
    (f"{T} | where FileName == 'curl' and DeviceName == 'db' | project ProcessId", [(3,)]),
    (f"{T} | where FileName == 'bash' or DeviceName == 'db' | project ProcessId | order by ProcessId",
     [(4,), (3,), (2,)]),
    (f"{T} | where not(FileName == 'curl') | project ProcessId | order by ProcessId asc", [(2,), (4,)]),
    (f"{T} | where Timestamp > ago(2h) | project ProcessId | order by ProcessId asc", [(1,), (3,), (4,)]),
    (f"{T} | summarize n = count() by DeviceName | order by DeviceName asc", [("db", 2), ("web", 2)]),
    (f"{T} | summarize count()", [(4,)]),
    (f"{T} | order by ProcessId desc | take 2 | project ProcessId", [(4,), (3,)]),
    (f"{T} | where ProcessId between (2 .. 3) | project ProcessId | order by ProcessId asc", [(2,), (3,)]),
    (f"{T} | where Timestamp between (ago(1h) .. now()) | project ProcessId | order by ProcessId asc",
     [(3,), (4,)]),
    (f"{T} | extend L = strlen(FileName), P = ProcessId * 10 | project FileName, L, P | order by P asc | take 2",
     [("curl", 4, 10), ("bash", 4, 20)]),
    (f"{T} | extend who = strcat(DeviceName, '/', tolower(FileName)) | where who == 'db/ls' | project ProcessId",
     [(4,)]),
    (f"{T} | top 2 by ProcessId | project ProcessId", [(4,), (3,)]),
    (f"{T} | top 1 by ProcessId asc | project FileName", [("curl",)]),
    (f"{T} | summarize n = count(), dcount(FileName), min(ProcessId), max(ProcessId) by DeviceName"
     " | order by DeviceName asc", [("db", 2, 2, 3, 4), ("web", 2, 2, 1, 2)]),
    (f"{T} | where Timestamp > ago(1d) | summarize count() by bin(Timestamp, 1h) | order by Timestamp asc",
     [("2026-12-07 11:00:00", 3)]),
    (f"{T} | summarize dcount(DeviceName) by FileName | where dcount_DeviceName > 1 | project FileName",
     [("curl",)]),
    (f"{T} | sort by ProcessId asc | limit 1 | project ProcessId", [(1,)]),
    (f"{T} | project ProcessId, FileName | where FileName == 'bash' | project ProcessId", [(2,)]),
])
def test_each_construct(db, kql, expected):
    assert run(db, kql) == expected


def test_kql_is_scoped_like_sql(db):
    assert run(db, f"{T} | project DeviceId", Scope(frozenset({2}))) == [("d2",), ("d2",)]


@pytest.mark.parametrize(("kql", "needle", "where"), [
    (f"{T} | join kind=inner (DeviceFileEvents) on DeviceId", "'join' is not supported", "position 23"),
    (f"{T} | summarize make_set(FileName)", "aggregation 'make_set'", "position 33"),
    (f"{T} | extend x = sha256(FileName)", "function 'sha256'", "position 34"),
    (f"{T} | where FileName matches regex 'x'", "operator 'matches'", "position 38"),
    (f"{T} | take many", "whole number", "position 28"),
    (f"{T} | where Timestamp > ago(seven)", "timespan", "position 45"),
    (f"{T} | where FileName ==", "at the end", "position 40"),
    ("Nowhere | take 1", "unknown table", None),
    (f"{T} | where FileName == 'x'; DROP", "unexpected character", None),
])
def test_unsupported_kql_names_the_construct_and_position(kql, needle, where):
    with pytest.raises(HuntError) as e:
        check(to_sql(kql, NOW), Scope(None))
    assert needle in str(e.value)
    if where:
        assert e.value.where == where


def test_what_counts_as_kql():
    assert looks_like_kql("DeviceProcessEvents | take 1") and looks_like_kql("DeviceInfo")
    assert not looks_like_kql("SELECT 1") and not looks_like_kql("WITH x AS (SELECT 1) SELECT * FROM x")
