"""A batch that makes the real server fail is held aside by the real agent, and delivered once when resent.

The fault is real and injected from outside the product: a trigger in the server's SQLite database aborts
the insert of any row carrying a marker, so the server's store fails and it answers 503 (a storage fault,
"send it again later") to that batch alone, while heartbeats and every other batch succeed. Dropping the
trigger removes the fault.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.e2e.agent_support import AgentProcess, require_root, wait_for
from tests.support import VigilServer
from vigil.agent.clock import SystemClock
from vigil.agent.spool import SPOOL_FILE, Spool

POISON = "vigil-injected-fault"
GOOD = [f"vigil-good-after-fault-{i}" for i in range(3)]
HOLD_AFTER = 3


def _row(file_name: str) -> dict[str, Any]:
    return {
        "table": "DeviceEvents",
        "Timestamp": datetime.now(UTC).isoformat(),
        "ActionType": "SensorHealth",
        "FileName": file_name,
    }


def _stored(db: Path, device_id: str) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            'SELECT "FileName", COUNT(*) FROM "DeviceEvents" WHERE "DeviceId" = ? AND "FileName" LIKE ?'
            ' GROUP BY "FileName"',
            (device_id, "vigil-%"),
        ).fetchall()
    finally:
        conn.close()
    return dict(rows)


def _vigil(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "vigil", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _health(state_dir: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(
        _vigil("agent", "health", "--state-dir", str(state_dir), "--output", "json").stdout
    )
    return doc


def test_poison_batch_is_held_counted_and_delivered_once_after_the_fault_is_removed(
    sqlite_server: VigilServer, tmp_path: Path
) -> None:
    require_root()
    server_db = sqlite_server.data_dir / "vigil.db"
    assert server_db.exists()
    agent = AgentProcess.enroll(sqlite_server, tmp_path / "agent")
    device = agent.device_id

    # The agent's queue before it starts: the poison row alone in the oldest batch, good rows behind it.
    spool = Spool(agent.state_dir / SPOOL_FILE, SystemClock())
    spool.append([_row(POISON)])
    poison = spool.next_batch(max_events=1)
    assert poison is not None and len(poison) == 1
    spool.append([_row(name) for name in GOOD])
    spool.close()

    conn = sqlite3.connect(server_db)
    conn.execute(
        f'CREATE TRIGGER vigil_test_fault BEFORE INSERT ON "DeviceEvents" WHEN NEW."FileName" = \'{POISON}\''
        " BEGIN SELECT RAISE(ABORT, 'injected storage fault'); END"
    )
    conn.commit()
    conn.close()

    config = tmp_path / "agent.toml"
    config.write_text(f"hold_after_server_errors = {HOLD_AFTER}\nbackoff_max_seconds = 1.0\n")
    with agent.log.open("ab") as log:
        agent.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vigil",
                "agent",
                "run",
                "--state-dir",
                str(agent.state_dir),
                "--config",
                str(config),
                "--managed-config",
                str(tmp_path / "none.toml"),
                "--heartbeat-seconds",
                "1",
                "--batch-seconds",
                "0.2",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        # The good rows behind the poison batch are stored: nothing is queued behind it for ever.
        wait_for(lambda: all(_stored(server_db, device).get(g) == 1 for g in GOOD), 90, "the good rows")
        health = wait_for(lambda: (h := _health(agent.state_dir))["held_batches"] == 1 and h, 30, "a held batch")
        assert health["held_events"] == 1
        assert POISON not in _stored(server_db, device)
        assert "held" in agent.log.read_text(errors="replace")
        server_log = sqlite_server.log.read_text(errors="replace")
        assert f"batch {poison.batch_id}" in server_log and "could not be stored" in server_log
        assert "Traceback" not in server_log

        # The operator lists it, the fault is fixed, the operator resends it.
        listed = _vigil("agent", "resend-held", "--state-dir", str(agent.state_dir), "--dry-run").stdout
        assert poison.batch_id in listed and "none released" in listed
        assert _health(agent.state_dir)["held_batches"] == 1
        conn = sqlite3.connect(server_db)
        conn.execute("DROP TRIGGER vigil_test_fault")
        conn.commit()
        conn.close()
        resent = _vigil("agent", "resend-held", "--state-dir", str(agent.state_dir), "--batch-id", poison.batch_id)
        assert "Released 1 held batches (1 events)" in resent.stdout

        wait_for(lambda: _stored(server_db, device).get(POISON) == 1, 60, "the resent batch")
        health = wait_for(lambda: (h := _health(agent.state_dir))["held_batches"] == 0 and h, 30, "no held batch")
        assert health["held_events"] == 0
    finally:
        agent.stop()
    # Exactly once, each of them, after the agent's final flush too.
    stored = _stored(server_db, device)
    assert stored == {POISON: 1, **{g: 1 for g in GOOD}}
    counters = _health(agent.state_dir)["counters"]
    assert counters["dropped"].get("rejected_by_server", 0) == 0
