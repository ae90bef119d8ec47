"""State-changing agent-side verbs (`vigil agent enroll|resend-held`, `vigil av` definitions and quarantine) leave a
record in the endpoint's append-only audit file, named cli:user@host as the server's CLI audit names it."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

from tests.integration.agent.test_runner import write_package
from tests.support import VigilServer
from tests.unit.agent.test_spool import _held_batch
from tests.unit.av.av_support import eicar
from vigil.agent.local_audit import AUDIT_FILE, entries
from vigil.agent.spool import SPOOL_FILE, Spool
from vigil.core.clock import SystemClock


def _vigil(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIGIL_AV_PUBLIC_KEY", "VIGIL_DATA_DIR")}
    return subprocess.run([sys.executable, "-m", "vigil", *args], capture_output=True, text=True, timeout=120,
                          env=env, check=False)


def test_agent_side_changes_are_recorded_in_the_local_audit_file(sqlite_server: VigilServer, tmp_path: Path) -> None:
    state = tmp_path / "agent"
    package = write_package(sqlite_server, tmp_path / "pkg.json")
    done = _vigil("agent", "enroll", str(package), "--state-dir", str(state))
    assert done.returncode == 0, done.stderr

    spool = Spool(state / SPOOL_FILE, SystemClock())
    held = _held_batch(spool, 3)
    spool.close()
    assert _vigil("agent", "resend-held", "--dry-run", "--state-dir", str(state)).returncode == 0  # changes nothing
    assert _vigil("agent", "resend-held", "--state-dir", str(state)).returncode == 0

    target = tmp_path / "target"
    target.mkdir()
    (target / "one.com").write_bytes(eicar())
    assert _vigil("av", "scan", "custom", str(target), "--quarantine", "--state-dir", str(state)).returncode == 1
    qid = entries(state)[-1]["details"]["ids"][0]
    assert _vigil("av", "threat", "quarantine", "restore", qid, "--state-dir", str(state)).returncode == 0
    assert _vigil("av", "threat", "quarantine", "restore", qid, "--state-dir", str(state)).returncode == 3  # refused

    records = entries(state)
    assert [(r["action"], r["target"]) for r in records] == [
        ("agent.enroll", records[0]["target"]), ("agent.resend_held", "*"),
        ("av.quarantine_add", "custom"), ("av.quarantine_restore", qid)]
    assert records[0]["details"]["server"] == sqlite_server.url
    assert records[1]["details"] == {"batches": [held.batch_id], "events": 3}
    assert records[2]["details"]["files"] == [str(target / "one.com")]
    assert all(r["actor"].startswith("cli:") and r["actor"].endswith(f"@{socket.gethostname()}") for r in records)
    assert stat.S_IMODE((state / AUDIT_FILE).stat().st_mode) == 0o600
