"""A backup taken under ingest load restores onto a fresh data dir; the enrolled agents reconnect to it unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from tests.conftest import PG_URL
from tests.e2e.agent_support import AgentProcess, process_events, require_root, wait_for
from tests.e2e.response_support import finished, start
from tests.support import VigilServer, enroll_raw, post_batch, process_event
from vigil.agent.actions.kill import start_time
from vigil.store.backup import telemetry_counts
from vigil.store.db import make_engine
from vigil.store.schema import audit_log

pytestmark = pytest.mark.root
PASSPHRASE = "restore drill passphrase 7"


def vigil(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vigil", *args], capture_output=True, text=True, timeout=300,
        env={**os.environ, "VIGIL_BACKUP_PASSPHRASE": PASSPHRASE, **(env or {})},
    )


class Ingest(threading.Thread):
    """Uploads batches as an agent would, without pause, until stopped; counts what the server acknowledged."""

    def __init__(self, server: VigilServer, device_id: str, credential: str) -> None:
        super().__init__(daemon=True)
        self.server, self.device_id, self.credential = server, device_id, credential
        self.stopping = threading.Event()
        self.accepted = 0
        self.batches = 0
        self.errors: list[str] = []

    def run(self) -> None:
        seq = 0
        while not self.stopping.is_set():
            events = [process_event(self.device_id, seq + i) for i in range(50)]
            seq += 50
            r = post_batch(self.server, self.credential, events)
            if r.status_code != 200:
                self.errors.append(f"{r.status_code} {r.text[:200]}")
                return
            self.accepted += r.json()["accepted"]
            self.batches += 1

    def stop(self) -> None:
        self.stopping.set()
        self.join(30)


@pytest.fixture
def fresh_database_url(db_url: str) -> Iterator[str | None]:
    """For a PostgreSQL server: a second empty database to restore into (the "new machine's"); else None."""
    if not db_url:
        yield None
        return
    name = f"vigil_restore_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _created(pid: int) -> str:
    return datetime.fromtimestamp(start_time(pid), UTC).isoformat().replace("+00:00", "Z")


def test_backup_under_load_restores_to_a_server_the_agents_reconnect_to(
    server: VigilServer, tmp_path: Path, fresh_database_url: str | None,
) -> None:
    require_root()
    agent = AgentProcess.enroll(server, tmp_path / "agent")
    agent.start()
    restored: VigilServer | None = None
    try:
        uploader = dict(enroll_raw(server, server.onboarding_package(expires="1h")["token"], "uploader").json())
        ingest = Ingest(server, uploader["device_id"], uploader["credential"])
        ingest.start()
        wait_for(lambda: ingest.batches >= 20, 60, "ingest to be under way", interval=0.1)
        before = ingest.batches
        archive = tmp_path / "vigil-backup.tar"
        made = vigil("backup", "create", "--data-dir", str(server.data_dir), "-o", str(archive))
        during = ingest.batches - before
        wait_for(lambda: ingest.batches > before + during + 5, 60, "ingest to go on after the backup", interval=0.1)
        ingest.stop()
        assert made.returncode == 0, made.stderr
        assert not ingest.errors, ingest.errors
        assert during > 0, "no batch was stored while the backup ran: it was not taken under load"

        checked = vigil("backup", "verify", str(archive), "--output", "json")
        assert checked.returncode == 0, checked.stderr
        manifest = json.loads(checked.stdout)
        at_backup = manifest["telemetry_counts"]
        engine = make_engine(server.db_url or f"sqlite:///{server.data_dir / 'vigil.db'}")
        with engine.connect() as conn:
            live = telemetry_counts(conn)
        engine.dispose()
        # A point-in-time copy: some of the load landed before it, some only after it.
        assert 0 < at_backup["DeviceProcessEvents"] < live["DeviceProcessEvents"]
        assert ingest.accepted >= 50 * 20

        server.stop()  # the old machine is gone; the agent keeps spooling and retrying
        new_dir = tmp_path / "new-machine"
        args = ["backup", "restore", str(archive), "--data-dir", str(new_dir)]
        if fresh_database_url:
            args += ["--database-url", fresh_database_url]
        done = vigil(*args)
        assert done.returncode == 0, done.stderr
        new_url = fresh_database_url or f"sqlite:///{new_dir / 'vigil.db'}"
        engine = make_engine(new_url)
        with engine.connect() as conn:
            assert telemetry_counts(conn) == at_backup
            last = conn.execute(sa.select(audit_log).order_by(audit_log.c.seq.desc()).limit(1)).one()
        engine.dispose()
        assert last.action == "backup.restore" and last.actor.startswith("cli:") and "@" in last.actor
        assert (new_dir / "pki" / "ca.pem").read_bytes() == (server.data_dir / "pki" / "ca.pem").read_bytes()

        restored = VigilServer(new_dir, fresh_database_url or "", server.port, server.admin_password)
        restored.start()
        # The uploader's device credential, hashed in the restored store, still authenticates and uploads.
        r = post_batch(restored, uploader["credential"], [process_event(uploader["device_id"], 10**9)])
        assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
        token = restored.admin_token()  # the administrator's password came back with the store
        marker = uuid.uuid4().hex[:12]
        for i in range(20):
            subprocess.run(["/bin/true", f"vigil-restore-{marker}-{i}"], check=True)

        def arrived() -> bool:
            evs = process_events(restored, token, agent.device_id)
            return sum(marker in str(e.get("ProcessCommandLine", "")) for e in evs) >= 20

        # The real agent, pinned to the old CA, reconnects to the restored server by itself.
        wait_for(arrived, 120, f"the agent to reconnect and upload (log: {agent.log})")
        # A command signed with the restored signing key is accepted by the agent that pinned the old one.
        victim = subprocess.Popen(["sleep", "300"])
        try:
            with restored.client(token) as c:
                a = finished(c, start(c, agent.device_id, "killProcess", ProcessId=victim.pid,
                                      ProcessCreationTime=_created(victim.pid))["id"], timeout=90)
            assert a["status"] == "Succeeded", a
            assert victim.wait(5) == -9
        finally:
            victim.kill()
            victim.wait()
    finally:
        agent.stop()
        if restored:
            restored.stop()
