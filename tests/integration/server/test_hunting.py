"""Advanced hunting on a real server: POST /api/advancedqueries/run on SQLite and PostgreSQL, scoped, refused."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.server.rbac_support import admin, groups_a_and_b, make_user, token_of
from tests.support import VigilServer, enroll_raw, post_batch, process_event
from vigil.core.rbac import Permission

QUERIES = [
    "SELECT DeviceName, FileName, ProcessId, Timestamp FROM DeviceProcessEvents ORDER BY DeviceName, ProcessId",
    "SELECT DeviceName, count(*) AS n FROM DeviceProcessEvents GROUP BY DeviceName ORDER BY DeviceName",
    "SELECT p.DeviceName, i.DeviceName AS other FROM DeviceProcessEvents p JOIN DeviceProcessEvents i"
    " ON p.ProcessId = i.ProcessId ORDER BY 1, 2",
    "WITH x AS (SELECT * FROM DeviceProcessEvents WHERE FileName = 'curl') SELECT DeviceName FROM x ORDER BY 1",
    "SELECT DeviceName FROM DeviceProcessEvents WHERE DeviceId IN (SELECT DeviceId FROM DeviceProcessEvents"
    " WHERE FileName = 'curl') ORDER BY 1",
    "SELECT DeviceName FROM DeviceProcessEvents UNION SELECT DeviceName FROM DeviceFileEvents ORDER BY 1",
    # the KQL subset, through the same checks
    "DeviceProcessEvents | where FileName in ('curl', 'ls') and ProcessCommandLine contains 'CUR'"
    " | project DeviceName, FileName | order by DeviceName asc",
    "DeviceProcessEvents | where Timestamp > ago(36500d) and not(FileName startswith 'b') | summarize n = count()"
    " by DeviceName | order by DeviceName asc | take 5",
    # between, extend, top, dcount/min/max and bin, whose SQL differs per dialect: the same answers on both
    "DeviceProcessEvents | where ProcessId between (100 .. 101) | extend L = strlen(FileName), P = ProcessId * 2"
    " | project DeviceName, FileName, L, P | order by P asc",
    "DeviceProcessEvents | top 2 by ProcessId desc | project DeviceName, ProcessId",
    "DeviceProcessEvents | summarize events = count(), dcount(FileName), min(ProcessId), max(ProcessId)"
    " by DeviceName, bin(Timestamp, 1h) | order by DeviceName asc",
]


def _enroll(server: VigilServer, c: httpx.Client, hostname: str) -> dict[str, Any]:
    pkg = c.post("/api/onboarding/packages", json={})
    assert pkg.status_code == 200, pkg.text
    r = enroll_raw(server, pkg.json()["token"], hostname)
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


def _seed_and_hunt(server: VigilServer) -> list[Any]:
    with admin(server) as c:
        devs = {h: _enroll(server, c, h) for h in ("a-web-01", "b-db-01")}
        for host, dev in devs.items():
            events = [process_event(dev["device_id"], i + 1, DeviceName=host, FileName=name, ProcessId=100 + i,
                                    FolderPath=f"/usr/bin/{name}", ProcessCommandLine=name)
                      for i, name in enumerate(("bash", "curl", "ls"))]
            assert post_batch(server, dev["credential"], events).status_code == 200
        groups_a_and_b(c)
        assert c.put("/api/roles/hunter", json={"permissions": [Permission.VIEW_DATA_SECOPS.value],
                                                "userGroups": ["ug-hunters"]}).status_code == 200
        assert c.put("/api/roles/planner", json={"permissions": [Permission.VIEW_PLAN_REPORTS.value],
                                                 "userGroups": ["ug-planners"]}).status_code == 200
        assert c.post("/api/rbac/mode", json={"mode": "rbac"}).status_code == 200
        make_user(server, "alice", groups=("ug-a", "ug-hunters"))
        make_user(server, "pat", groups=("ug-a", "ug-planners"))

        everything = []
        for q in QUERIES:
            r = c.post("/api/advancedqueries/run", json={"Query": q})
            assert r.status_code == 200, (q, r.text)
            everything.append(r.json())
        body = everything[0]
        assert [col["Name"] for col in body["Schema"]] == ["DeviceName", "FileName", "ProcessId", "Timestamp"]
        assert [col["Type"] for col in body["Schema"]] == ["String", "String", "Int64", "DateTime"]
        assert len(body["Results"]) == 6
        assert body["Results"][0] == {"DeviceName": "a-web-01", "FileName": "bash", "ProcessId": 100,
                                      "Timestamp": "2026-11-28T09:00:00.000001Z"}
        assert everything[1]["Results"] == [{"DeviceName": "a-web-01", "n": 3}, {"DeviceName": "b-db-01", "n": 3}]
        assert everything[6]["Results"] == [{"DeviceName": "a-web-01", "FileName": "curl"},
                                            {"DeviceName": "b-db-01", "FileName": "curl"}]
        assert everything[7]["Results"] == [{"DeviceName": "a-web-01", "n": 2}, {"DeviceName": "b-db-01", "n": 2}]
        assert everything[8]["Results"][0] == {"DeviceName": "a-web-01", "FileName": "bash", "L": 4, "P": 200}
        assert everything[10]["Results"] == [
            {"DeviceName": d, "Timestamp": "2026-11-28T09:00:00Z", "events": 3, "dcount_FileName": 3,
             "min_ProcessId": 100, "max_ProcessId": 102} for d in ("a-web-01", "b-db-01")]

        for bad, needle in [("DELETE FROM DeviceProcessEvents", "only SELECT"),
                            ("SELECT * FROM devices", "unknown table 'devices'"),
                            ("SELECT * FROM sqlite_master", "unknown table"),
                            ("SELECT Nope FROM DeviceProcessEvents", "unknown column 'Nope'"),
                            ("SELECT FileName + FROM", "syntax error"),
                            ("SELECT load_extension('x')", "not allowed"),
                            ("DeviceProcessEvents | join kind=inner (DeviceFileEvents) on DeviceId",
                             "'join' is not supported")]:
            r = c.post("/api/advancedqueries/run", json={"Query": bad})
            assert 400 <= r.status_code < 500, (bad, r.status_code, r.text)
            assert needle in r.text, r.text
        assert c.post("/api/advancedqueries/run", json={"query": "x"}).status_code == 422

    with server.client(token_of(server, "alice")) as c:
        for q in QUERIES:
            r = c.post("/api/advancedqueries/run", json={"Query": q})
            assert r.status_code == 200, (q, r.text)
            names = {v for row in r.json()["Results"] for v in row.values() if isinstance(v, str) and "-0" in v}
            assert names <= {"a-web-01"}, (q, names)
        assert len(c.post("/api/advancedqueries/run", json={"Query": QUERIES[0]}).json()["Results"]) == 3
        codes = [c.post("/api/advancedqueries/run", json={"Query": "SELECT 1 AS x"}) for _ in range(60)]
        refused = [r for r in codes if r.status_code == 429]
        assert refused and refused[0].json()["error"] == "too_many_requests", [r.status_code for r in codes]
    with server.client(token_of(server, "pat")) as c:
        r = c.post("/api/advancedqueries/run", json={"Query": QUERIES[0]})
        assert r.status_code == 403, r.text
    with admin(server) as c:
        audit = c.get("/api/audit", params={"action": "hunt.run"}).json()["value"]
        assert len(audit) >= len(QUERIES) * 2
    cli = _cli(server, QUERIES[1], "--output", "json")
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout) == everything[1]
    cli = _cli(server, QUERIES[0], "--output", "csv")
    assert cli.returncode == 0, cli.stderr
    rows = list(csv.reader(io.StringIO(cli.stdout)))
    assert rows[0] == ["DeviceName", "FileName", "ProcessId", "Timestamp"] and len(rows) == 7
    cli = _cli(server, QUERIES[1], "--output", "table")
    assert cli.returncode == 0 and "a-web-01" in cli.stdout and "2 row(s)" in cli.stderr, cli.stderr
    cli = _cli(server, QUERIES[0], "--as", "alice", "--output", "json")
    assert cli.returncode == 0, cli.stderr
    assert {r["DeviceName"] for r in json.loads(cli.stdout)["Results"]} == {"a-web-01"}
    cli = _cli(server, "DELETE FROM DeviceProcessEvents")
    assert cli.returncode == 2 and "only SELECT" in cli.stderr, (cli.returncode, cli.stderr)
    return [e["Results"] for e in everything]


def _cli(server: VigilServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VIGIL_DATA_DIR": str(server.data_dir)}
    env.pop("VIGIL_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "vigil", "hunt", *args, "--data-dir", str(server.data_dir)],
                          capture_output=True, text=True, env=env, timeout=120, check=False)


@pytest.mark.postgres
def test_hunting_on_sqlite_and_postgres_gives_the_same_answers_within_scope(tmp_path: Path, pg_database: str) -> None:
    results = []
    for name, url in (("sqlite", ""), ("postgres", pg_database)):
        srv = VigilServer.create(tmp_path / name, url)
        srv.start()
        try:
            results.append(_seed_and_hunt(srv))
        finally:
            srv.stop()
    assert results[0] == results[1]
