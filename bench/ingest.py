"""Ingest benchmark: events/s through Vigil's validation and storage, over HTTP, and raw SQLite for scale."""

from __future__ import annotations

import argparse
import cProfile
import gzip
import json
import os
import pstats
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psutil
import psycopg
import sqlalchemy as sa

from vigil.core.clock import SystemClock
from vigil.core.telemetry import DEVICE_PROCESS_EVENTS, validate_events
from vigil.server.ingest import IngestPipeline
from vigil.store import db
from vigil.store import devices as device_store

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the HTTP run reuses the tests' real-server harness

from tests.support import VigilServer, enroll_raw  # noqa: E402

BATCH = 2_000
TABLE = DEVICE_PROCESS_EVENTS.name
DEFAULT_PG = os.environ.get("VIGIL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
TARGET_PER_CORE = 20_000
TARGET_RATIO = 0.5

Event = dict[str, Any]

# (folder, file name, command line template) of processes a Linux fleet really starts.
_PROGRAMS = [
    ("/usr/bin", "bash", "/bin/bash -c 'cd /srv/app && ./deploy.sh --env {w} --verbose'"),
    ("/usr/bin", "python3", "/usr/bin/python3 /opt/jobs/{w}.py --config /etc/jobs/{w}.yaml --since 3600"),
    ("/usr/bin", "curl", "curl -fsSL https://updates.example.org/{w}/manifest.json -o /tmp/{w}.json"),
    ("/usr/bin", "git", "git -C /home/dev/src/{w} fetch --prune origin refs/heads/main"),
    ("/usr/sbin", "sshd", "sshd: {w} [priv]"),
    ("/usr/bin", "systemctl", "systemctl --no-pager status {w}.service"),
    ("/usr/bin", "ls", "ls -la --color=auto /var/log/{w}"),
    ("/usr/bin", "grep", "grep -rn --include=*.conf {w} /etc/nginx/sites-enabled"),
    ("/usr/bin", "tar", "tar -czf /backup/{w}-2026-11-28.tar.gz /var/lib/{w}"),
    ("/usr/local/bin", "node", "node /srv/{w}/dist/server.js --port 8080 --cluster"),
    ("/usr/bin", "docker", "docker run --rm -v /srv/{w}:/data registry.example.org/{w}:1.4.2 migrate"),
    ("/usr/bin", "apt-get", "apt-get install -y --no-install-recommends {w}"),
]
_PARENTS = [
    ("/usr/bin", "bash", "-bash"),
    ("/usr/lib/systemd", "systemd", "/lib/systemd/systemd --user"),
    ("/usr/sbin", "cron", "/usr/sbin/cron -f -P"),
    ("/usr/bin", "python3", "/usr/bin/python3 /usr/bin/supervisord -n -c /etc/supervisor/supervisord.conf"),
]
_WORDS = ["billing", "web", "etl", "reports", "auth", "metrics", "mailer", "search", "cache", "frontend"]
_USERS = [("root", 0), ("www-data", 33), ("dev", 1000), ("backup", 34), ("postgres", 112)]


def _sha(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


def make_events(n: int, device_id: str, seed: int = 7) -> list[Event]:
    """``n`` DeviceProcessEvents rows in the agent's wire form, every usual column filled."""
    rng = random.Random(seed)
    hashes = {p[1]: _sha(rng) for p in _PROGRAMS + _PARENTS}
    start = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    out: list[Event] = []
    for seq in range(1, n + 1):
        folder, name, cmd = rng.choice(_PROGRAMS)
        pfolder, pname, pcmd = rng.choice(_PARENTS)
        user, uid = rng.choice(_USERS)
        when = start + timedelta(microseconds=seq * 1_731)
        pid = rng.randrange(2_000, 4_000_000)
        out.append({
            "table": TABLE,
            "Timestamp": when.isoformat(timespec="microseconds"),
            "DeviceId": device_id,
            "DeviceName": "build-07.corp.example.org",
            "ActionType": "ProcessCreated" if rng.random() < 0.6 else "ProcessTerminated",
            "ReportId": seq,
            "FileName": name,
            "FolderPath": f"{folder}/{name}",
            "SHA256": hashes[name],
            "ProcessId": pid,
            "ProcessCommandLine": cmd.format(w=rng.choice(_WORDS)),
            "ProcessCreationTime": (when - timedelta(microseconds=250)).isoformat(timespec="microseconds"),
            "AccountName": user,
            "AccountDomain": "build-07",
            "ProcessPosixUserId": uid,
            "ProcessCurrentWorkingDirectory": f"/home/{user}",
            "InitiatingProcessId": pid - rng.randrange(1, 500),
            "InitiatingProcessFileName": pname,
            "InitiatingProcessFolderPath": f"{pfolder}/{pname}",
            "InitiatingProcessCommandLine": pcmd,
            "InitiatingProcessSHA256": hashes[pname],
            "InitiatingProcessCreationTime": (when - timedelta(seconds=42)).isoformat(timespec="microseconds"),
            "InitiatingProcessAccountName": user,
            "InitiatingProcessPosixUserId": uid,
            "InitiatingProcessParentId": 1,
            "InitiatingProcessParentFileName": "systemd",
            "AdditionalFields": {"Source": "audit+procfs"},
        })
    return out


def batches(events: list[Event]) -> Iterator[list[Event]]:
    for i in range(0, len(events), BATCH):
        yield events[i : i + BATCH]


@dataclass
class Figure:
    name: str
    events: int
    wall: float
    cpu: float  # CPU seconds spent on the work, in whichever process did it

    @property
    def rate(self) -> float:
        return self.events / self.wall

    @property
    def per_core(self) -> float:
        return self.events / self.cpu if self.cpu else float("nan")


class Stopwatch:
    """Accumulates wall and CPU time (this process) over the timed sections only."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0

    def __enter__(self) -> Stopwatch:
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *_: object) -> None:
        self.wall += time.perf_counter() - self._w
        self.cpu += time.process_time() - self._c


def enroll_device(engine: sa.Engine) -> str:
    """A device enrolled the way the agent API does it, so that ingest's device update has a row."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        tok = device_store.issue_token(
            conn, group=None, expires_at=now + timedelta(hours=1), max_uses=1, created_by="bench", now=now
        )
        token_id, group_id = device_store.redeem_token(conn, tok.token, now)
        device_id, _ = device_store.register_device(
            conn, token_id=token_id, group_id=group_id, hostname="build-07.corp.example.org",
            os_platform="Linux", os_version="12", agent_version="bench", machine_id="", ip=None, now=now,
        )
    return device_id


def bench_vigil(url: str, n: int, label: str, profile: Path | None = None) -> list[Figure]:
    """validate_events + IngestPipeline.ingest into a migrated database, batch by batch."""
    engine = db.make_engine(url)
    try:
        db.upgrade(engine)
        device_id = enroll_device(engine)
        events = make_events(n, device_id)
        pipeline = IngestPipeline(engine, SystemClock())
        validate, store = Stopwatch(), Stopwatch()
        prof = cProfile.Profile() if profile else None
        if prof:
            prof.enable()
        for chunk in batches(events):
            with validate:
                rows = validate_events(chunk, device_id)
            with store:
                ack = pipeline.ingest(device_id, uuid.uuid4().hex, rows)
            assert ack.accepted == len(chunk) and not ack.duplicate, ack
        if prof and profile:
            prof.disable()
            prof.dump_stats(profile)
        with engine.connect() as conn:
            stored = conn.execute(sa.text(f'SELECT count(*) FROM "{TABLE}"')).scalar_one()
        assert stored == n, (stored, n)
    finally:
        engine.dispose()
    return [
        Figure(f"Vigil ingest, {label}", n, validate.wall + store.wall, validate.cpu + store.cpu),
        Figure("  of which validate_events", n, validate.wall, validate.cpu),
        Figure("  of which IngestPipeline.ingest", n, store.wall, store.cpu),
    ]


def _stored_form(events: list[Event]) -> list[tuple[Any, ...]]:
    """Rows as the plain values the Vigil table ends up holding (SQLAlchemy's SQLite text forms)."""
    cols = DEVICE_PROCESS_EVENTS.column_names
    times = {c.name for c in DEVICE_PROCESS_EVENTS.columns if c.type == "datetime"}
    out = []
    for e in events:
        vals: list[Any] = []
        for c in cols:
            v = e.get(c)
            if c in times and v is not None:
                v = datetime.fromisoformat(v).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
            elif isinstance(v, dict):
                v = json.dumps(v, separators=(",", ":"))
            vals.append(v)
        out.append(tuple(vals))
    return out


def bench_raw_sqlite(workdir: Path, n: int) -> Figure:
    """stdlib sqlite3, the same table and indexes as Vigil's, executemany of ready tuples per batch."""
    ref = workdir / "schema-ref.db"
    engine = db.make_engine(f"sqlite:///{ref}")
    db.upgrade(engine)
    engine.dispose()
    with sqlite3.connect(ref) as src:
        ddl = [r[0] for r in src.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL ORDER BY type DESC", (TABLE,)
        )]
    src.close()
    rows = _stored_form(make_events(n, "0" * 40))
    con = sqlite3.connect(workdir / "raw.db", isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    for stmt in ddl:
        con.execute(stmt)
    cols = DEVICE_PROCESS_EVENTS.column_names
    sql = f'INSERT INTO "{TABLE}" ({", ".join(cols)}) VALUES ({", ".join("?" * len(cols))})'
    sw = Stopwatch()
    with sw:
        for i in range(0, n, BATCH):
            con.execute("BEGIN")
            con.executemany(sql, rows[i : i + BATCH])
            con.execute("COMMIT")
    con.close()
    return Figure("raw sqlite3 executemany (baseline)", n, sw.wall, sw.cpu)


def bench_http(workdir: Path, n: int) -> list[Figure]:
    """A real `vigil server` (TLS, SQLite) and one client posting gzip batches back to back."""
    server = VigilServer.create(workdir / "http-server", "")
    server.start()
    try:
        pkg = server.onboarding_package(expires="1h")
        dev = enroll_raw(server, pkg["token"], hostname="build-07.corp.example.org").json()
        # Serialize and compress before timing: that is the agent's work, not the server's.
        bodies = [
            gzip.compress(orjson.dumps({"batch_id": uuid.uuid4().hex, "events": chunk}), compresslevel=6)
            for chunk in batches(make_events(n, dev["device_id"]))
        ]
        assert server.proc is not None
        srv = psutil.Process(server.proc.pid)
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        with server.client(dev["credential"]) as client:
            client.post("/agent/v1/telemetry", content=bodies[0], headers=headers).raise_for_status()
            before = srv.cpu_times()
            sw = Stopwatch()
            with sw:
                for body in bodies[1:]:
                    r = client.post("/agent/v1/telemetry", content=body, headers=headers)
                    r.raise_for_status()
            after = srv.cpu_times()
        server_cpu = (after.user - before.user) + (after.system - before.system)
        timed = n - min(n, BATCH)
        mib = sum(len(b) for b in bodies[1:]) / 2**20
    finally:
        server.stop()
    return [
        Figure(f"HTTP end-to-end, SQLite ({mib:.1f} MiB gzip)", timed, sw.wall, server_cpu),
        Figure("  client CPU (httpx, TLS)", timed, sw.wall, sw.cpu),
    ]


def bench_postgres(admin_url: str, n: int) -> tuple[list[Figure], str | None]:
    """Vigil ingest into a throwaway PostgreSQL database; the reason instead when it is unreachable."""
    try:
        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=3)
    except psycopg.Error as e:
        return [], f"PostgreSQL not reachable at {admin_url}: {str(e).strip().splitlines()[0]}"
    name = f"vigil_bench_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            return bench_vigil(f"{admin_url.rsplit('/', 1)[0]}/{name}", n, "PostgreSQL"), None
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def print_table(figures: list[Figure]) -> None:
    print(f"{'':42} {'events':>8} {'wall s':>8} {'events/s':>10} {'CPU s':>8} {'events/s/core':>14}")
    for f in figures:
        print(f"{f.name:42} {f.events:>8} {f.wall:>8.2f} {f.rate:>10,.0f} {f.cpu:>8.2f} {f.per_core:>14,.0f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--events", type=int, default=100_000, help="events per run (default 100,000)")
    p.add_argument("--postgres", default=DEFAULT_PG, help="admin URL; a throwaway database is made and dropped")
    p.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL run")
    p.add_argument("--no-http", action="store_true", help="skip the HTTP run")
    p.add_argument("--profile", type=Path, help="write a cProfile of the SQLite ingest run here")
    args = p.parse_args(argv)
    n = args.events
    print(f"{n:,} DeviceProcessEvents in batches of {BATCH:,}; Python {sys.version.split()[0]}, "
          f"SQLite {sqlite3.sqlite_version}, {os.cpu_count()} CPUs")
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp:
        work = Path(tmp)
        raw = bench_raw_sqlite(work, n)
        vigil = bench_vigil(f"sqlite:///{work / 'vigil.db'}", n, "SQLite", args.profile)
        figures = [raw, *vigil]
        if args.no_postgres:
            notes.append("PostgreSQL: skipped (--no-postgres)")
        else:
            pg, why = bench_postgres(args.postgres, n)
            figures += pg
            if why:
                notes.append(f"PostgreSQL: skipped, {why}")
        if not args.no_http:
            figures += bench_http(work, n)
    print()
    print_table(figures)
    ours = vigil[0]
    ratio = ours.rate / raw.rate
    print()
    print(f"Vigil SQLite ingest ÷ raw insert: {ratio:.0%} by wall time, {ours.per_core / raw.per_core:.0%} by CPU "
          f"time (target ≥ {TARGET_RATIO:.0%}) {'ok' if ratio >= TARGET_RATIO else 'MISSED'}")
    print(f"Vigil SQLite ingest per core: {ours.per_core:,.0f} events/s (target ≥ {TARGET_PER_CORE:,}) "
          f"{'ok' if ours.per_core >= TARGET_PER_CORE else 'MISSED'}")
    print("HTTP 'CPU s' is the server process's CPU time; per core = events ÷ server CPU seconds.")
    for note in notes:
        print(note)
    if args.profile:
        pstats.Stats(str(args.profile)).sort_stats("cumulative").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
