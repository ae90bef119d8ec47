"""Benchmark advanced hunting and back-testing over generated telemetry, with a same-run baseline.

Generates ``--rows`` DeviceProcessEvents rows (issue 24's target: 10,000,000) on ``--devices`` devices into a fresh
SQLite store and, with ``--pg-url``, a fresh PostgreSQL database, then:

- runs ten typical hunting queries (SQL and KQL) through the hunting service — checks, device-group scope rewrite,
  the read-only runner, result normalization — as a scoped analyst, and the very SQL the service produced
  directly through the driver (the baseline): ``query_ms_p50`` / ``query_ms_p95`` and ``baseline_ms_p50`` /
  ``baseline_ms_p95`` over every run of every query;
- back-tests Vigil's rule pack plus SigmaHQ's Linux rules (``--data``/sigma/rules/linux, when present) over the
  first ``--backtest-rows`` rows through the same matchers as live detection: ``backtest_events_per_s``, against
  reading the same rows without matching (``baseline_read_events_per_s``).

Targets (issue 24): typical query p95 <= 2 s on SQLite at 10 M rows; back-test >= 100,000 events/s.
Prints a table, or one JSON object with --json (one entry per database under "stores").
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from vigil.app import hunting
from vigil.app.principal import Principal
from vigil.app.stores import sql_store
from vigil.core.clock import FixedClock
from vigil.core.rbac import Permission
from vigil.detect import load_rules
from vigil.hunt import kql
from vigil.hunt.backtest import Backtest
from vigil.hunt.sql import Scope, check
from vigil.server.detection import BUILTIN_RULES
from vigil.store import db
from vigil.store.devices import create_group, ensure_default_group
from vigil.store.history import SqlHistory
from vigil.store.hunt import SqlHuntRunner
from vigil.store.schema import devices, telemetry_tables

REPO = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)
TARGET_P95_MS = 2000.0
TARGET_BACKTEST = 100_000
BINARIES = ["bash", "sh", "python3", "curl", "wget", "ls", "cat", "grep", "ssh", "sudo", "nc", "systemctl",
            "cron", "tar", "gzip", "awk", "sed", "find", "id", "uname"]
QUERIES = [
    "DeviceProcessEvents | where Timestamp > ago(1h) | summarize count() by FileName | top 10 by count_",
    "DeviceProcessEvents | where FileName == 'nc' and ProcessCommandLine contains ' -l' | project Timestamp,"
    " DeviceName, ProcessCommandLine | take 100",
    "DeviceProcessEvents | where DeviceName == 'host-0007' | order by Timestamp desc | take 100",
    "DeviceProcessEvents | where FileName in ('curl', 'wget') | summarize dcount(DeviceName) by FileName",
    "DeviceProcessEvents | where Timestamp between (ago(2h) .. ago(1h)) | summarize count() by"
    " bin(Timestamp, 10m)",
    "SELECT DeviceName, count(*) AS n FROM DeviceProcessEvents WHERE FileName = 'sudo' GROUP BY DeviceName"
    " ORDER BY n DESC LIMIT 20",
    "SELECT FileName, ProcessCommandLine FROM DeviceProcessEvents WHERE ProcessCommandLine LIKE '%base64%'"
    " LIMIT 100",
    "DeviceProcessEvents | where InitiatingProcessFileName == 'cron' and FileName == 'sh' | project Timestamp,"
    " DeviceName, ProcessCommandLine | take 50",
    "SELECT InitiatingProcessFileName, FileName, count(*) AS n FROM DeviceProcessEvents WHERE Timestamp >"
    " '2026-12-07 11:00:00' GROUP BY InitiatingProcessFileName, FileName ORDER BY n DESC LIMIT 25",
    "DeviceProcessEvents | where ProcessId > 30000 and AccountName == 'root' | summarize min(Timestamp),"
    " max(Timestamp) by DeviceName | take 20",
]


def _generate(engine: sa.Engine, rows: int, n_devices: int, seed: int) -> None:
    with engine.begin() as conn:
        groups = [ensure_default_group(conn, NOW), create_group(conn, "bench-b", NOW)]
        conn.execute(devices.insert(), [dict(
            id=f"dev-{i:04d}", computer_dns_name=f"host-{i:04d}", os_platform="Linux", group_id=groups[i % 2],
            tags=[], agent_tags=[], credential_hash="x" * 64, first_seen=NOW, last_seen=NOW, counters={},
            sensors={}) for i in range(n_devices)])
    rnd = random.Random(seed)
    table = telemetry_tables["DeviceProcessEvents"]
    chunk = 20_000
    span = 3 * 3600  # the rows spread over the last three hours
    for start in range(0, rows, chunk):
        batch = []
        for i in range(start, min(rows, start + chunk)):
            dev = i % n_devices
            name, parent = rnd.choice(BINARIES), rnd.choice(BINARIES)
            arg = rnd.choice(["-l 4444", "-c 'echo aGVsbG8= | base64 -d'", "/tmp/x", "-la", "status ssh", "--help"])
            batch.append({
                "Timestamp": NOW - timedelta(seconds=rnd.random() * span), "DeviceId": f"dev-{dev:04d}",
                "DeviceName": f"host-{dev:04d}", "ActionType": "ProcessCreated", "ReportId": i // n_devices + 1,
                "FileName": name, "FolderPath": f"/usr/bin/{name}", "ProcessId": rnd.randrange(1, 65536),
                "ProcessCommandLine": f"{name} {arg}", "AccountName": rnd.choice(["root", "www-data", "alice"]),
                "InitiatingProcessFileName": parent, "InitiatingProcessFolderPath": f"/usr/bin/{parent}",
                "InitiatingProcessCommandLine": parent, "InitiatingProcessId": rnd.randrange(1, 65536),
            })
        with engine.begin() as conn:
            conn.execute(table.insert(), batch)


def _direct(engine: sa.Engine, sql: str) -> None:
    """The baseline: the service's SQL through the DB-API driver, no checks and no normalization."""
    with engine.connect() as conn:
        raw: Any = conn.connection.driver_connection
        cur = raw.cursor()
        cur.execute(sql)
        cur.fetchall()
        cur.close()
        conn.rollback()


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 2)


def _bench_queries(engine: sa.Engine, runs: int) -> dict[str, Any]:
    store, runner = sql_store(engine), SqlHuntRunner(engine)
    with engine.connect() as conn:
        group = conn.execute(sa.select(devices.c.group_id).where(devices.c.id == "dev-0000")).scalar_one()
    analyst = Principal("bench", frozenset({Permission.VIEW_DATA_SECOPS}), frozenset({group}), username="bench")
    clock = FixedClock(NOW)
    served, direct = [], []
    for _ in range(runs):
        for q in QUERIES:
            t0 = time.perf_counter()
            hunting.run_query(store, runner, clock, analyst, q, rate=None)
            served.append((time.perf_counter() - t0) * 1000)
            sql = kql.to_sql(q, NOW, runner.dialect) if kql.looks_like_kql(q) else q
            checked = check(sql, Scope(analyst.device_group_ids), runner.dialect, hunting.MAX_ROWS).sql
            t0 = time.perf_counter()
            _direct(engine, checked)
            direct.append((time.perf_counter() - t0) * 1000)
    return {"query_ms_p50": _pct(served, 0.5), "query_ms_p95": _pct(served, 0.95),
            "baseline_ms_p50": _pct(direct, 0.5), "baseline_ms_p95": _pct(direct, 0.95)}


def _bench_backtest(engine: sa.Engine, rule_dirs: list[Path], limit: int) -> dict[str, Any]:
    report = load_rules(rule_dirs)
    history = SqlHistory(engine)
    since = NOW - timedelta(days=1)

    def rows() -> Any:
        for n, item in enumerate(history.rows(["DeviceProcessEvents"], since, None)):
            if n >= limit:
                return
            yield item

    t0 = time.perf_counter()
    read = sum(1 for _ in rows())
    read_s = time.perf_counter() - t0
    bt = Backtest(report.ruleset)
    t0 = time.perf_counter()
    bt.run(rows())
    bt_s = time.perf_counter() - t0
    return {"backtest_rules": len(report.ruleset), "backtest_events": bt.events,
            "backtest_alerts": bt.summary()["alerts"], "backtest_events_per_s": round(bt.events / bt_s),
            "baseline_read_events_per_s": round(read / read_s)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--devices", type=int, default=200)
    p.add_argument("--runs", type=int, default=3, help="runs of the ten queries")
    p.add_argument("--backtest-rows", type=int, default=1_000_000)
    p.add_argument("--pg-url", default="", help="an empty PostgreSQL database to fill as well")
    p.add_argument("--data", type=Path, default=Path(os.environ.get("VIGIL_SHARED_DATA",
                                                                    REPO.parent / "shared" / "data")))
    p.add_argument("--seed", type=int, default=24)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    rule_dirs = [BUILTIN_RULES]
    sigma_linux = args.data / "sigma" / "rules" / "linux"
    if sigma_linux.is_dir():
        rule_dirs.append(sigma_linux)
    out: dict[str, Any] = {"rows": args.rows, "devices": args.devices, "queries": len(QUERIES),
                           "rule_dirs": [str(d) for d in rule_dirs], "stores": {}}
    with tempfile.TemporaryDirectory(prefix="vigil-bench-hunt-") as tmp:
        urls = [("sqlite", f"sqlite:///{Path(tmp) / 'hunt.db'}")] + ([("postgres", args.pg_url)] if args.pg_url else [])
        for name, url in urls:
            engine = db.make_engine(url)
            try:
                db.upgrade(engine)
                t0 = time.perf_counter()
                _generate(engine, args.rows, args.devices, args.seed)
                gen_s = time.perf_counter() - t0
                result = {"generate_s": round(gen_s, 1), **_bench_queries(engine, args.runs),
                          **_bench_backtest(engine, rule_dirs, args.backtest_rows)}
            finally:
                engine.dispose()
            out["stores"][name] = result
    sqlite = out["stores"]["sqlite"]
    out.update({k: sqlite[k] for k in ("query_ms_p50", "query_ms_p95", "backtest_events_per_s")})
    out["targets"] = {"query_ms_p95": TARGET_P95_MS, "backtest_events_per_s": TARGET_BACKTEST}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    for name, r in out["stores"].items():
        print(f"{name}: {args.rows:,} rows (generated in {r['generate_s']} s)")
        print(f"  hunting  p50 {r['query_ms_p50']} ms, p95 {r['query_ms_p95']} ms "
              f"(driver baseline p50 {r['baseline_ms_p50']} ms, p95 {r['baseline_ms_p95']} ms; target p95 "
              f"<= {TARGET_P95_MS:.0f} ms on SQLite)")
        print(f"  backtest {r['backtest_rules']} rules over {r['backtest_events']:,} events: "
              f"{r['backtest_events_per_s']:,} events/s (reading alone {r['baseline_read_events_per_s']:,}/s; "
              f"target >= {TARGET_BACKTEST:,}/s), {r['backtest_alerts']} alerts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
