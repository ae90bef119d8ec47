"""The whole agent against a real Vigil server: enroll over pinned TLS, run, telemetry arrives."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.integration.agent.support import wait_for
from tests.support import VigilServer
from vigil.agent.config import AgentConfig
from vigil.agent.enroll import enroll
from vigil.agent.errors import EnrollmentError, ServerRejected
from vigil.agent.health import read_health
from vigil.agent.runner import build_agent
from vigil.store.db import make_engine
from vigil.store.schema import telemetry_tables


def write_package(server: VigilServer, path: Path, **changes: object) -> Path:
    pkg = server.onboarding_package(expires="1h", uses=1)
    pkg.update(changes)
    path.write_text(json.dumps(pkg))
    return path


def rows(server: VigilServer, table: str) -> list[dict[str, object]]:
    engine = make_engine(f"sqlite:///{server.data_dir / 'vigil.db'}")
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(telemetry_tables[table]))]
    finally:
        engine.dispose()


def test_enroll_run_and_report(sqlite_server: VigilServer, tmp_path: Path) -> None:
    state = tmp_path / "agent"
    identity = enroll(write_package(sqlite_server, tmp_path / "pkg.json"), state)
    assert (state / "identity.json").stat().st_mode & 0o777 == 0o600

    config = AgentConfig(state_dir=state, heartbeat_seconds=0.5, batch_seconds=0.2)
    agent = build_agent(config)
    health = agent.start()
    marker = uuid.uuid4().hex
    try:
        if os.geteuid() == 0 and health["process"].state != "unavailable":
            subprocess.run(["/bin/true", marker], check=True)
        assert wait_for(lambda: agent.spool.counters().acknowledged >= 2 and agent.spool.depth() == 0)
    finally:
        agent.stop()

    info = rows(sqlite_server, "DeviceInfo")
    assert info and info[0]["DeviceId"] == identity.device_id and info[0]["OSPlatform"] == "Linux"
    started = [r for r in rows(sqlite_server, "DeviceEvents") if r["ActionType"] == "AgentStarted"]
    assert started
    if os.geteuid() == 0 and health["process"].state != "unavailable":
        procs = [r for r in rows(sqlite_server, "DeviceProcessEvents") if marker in str(r["ProcessCommandLine"])]
        assert procs and procs[0]["InitiatingProcessId"] == os.getpid()
    report = read_health(state)
    assert report.enrolled and report.last_upload_at and report.spool_depth == 0
    # The file sensor watches the whole root filesystem, so other work on the machine can push it over its
    # rate limit (counted, as it should be); any other drop in this quiet run is a bug.
    assert set(report.counters["dropped"]) <= {"aggregated", "rate_limit.file", "file_path_unresolved"}
    assert report.sensors.keys() == {"process", "file", "network", "logon", "system_log", "device_info",
                                    "software_inventory", "secure_configuration", "resource_budget",
                                    "incumbent_security", "antivirus", "antivirus_state"}


def test_used_token_is_refused_with_the_servers_reason(sqlite_server: VigilServer, tmp_path: Path) -> None:
    package = write_package(sqlite_server, tmp_path / "pkg.json")
    enroll(package, tmp_path / "a")
    with pytest.raises(ServerRejected) as e:
        enroll(package, tmp_path / "b")
    assert e.value.status == 401 and e.value.field == "token"


def test_server_certificate_from_another_ca_is_refused(sqlite_server: VigilServer, tmp_path: Path) -> None:
    from tests.unit.agent.pki import make_ca
    from vigil.agent.identity import ca_fingerprint

    other = make_ca()
    package = write_package(sqlite_server, tmp_path / "pkg.json", ca_cert_pem=other.cert_pem,
                            ca_sha256=ca_fingerprint(other.cert_pem))
    with pytest.raises(EnrollmentError, match="not signed by the pinned CA"):
        enroll(package, tmp_path / "a")


def test_cli_enroll_and_run_as_subprocesses(sqlite_server: VigilServer, tmp_path: Path) -> None:
    """What `vigil up` does: enroll with the CLI, run it, stop it with SIGTERM."""
    state = tmp_path / "agent"
    package = write_package(sqlite_server, tmp_path / "pkg.json")
    vigil = [sys.executable, "-m", "vigil", "agent"]
    done = subprocess.run([*vigil, "enroll", str(package), "--state-dir", str(state)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    proc = subprocess.Popen([*vigil, "run", "--state-dir", str(state), "--heartbeat-seconds", "0.5",
                             "--batch-seconds", "0.2"], stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: read_health(state).counters["acknowledged"] >= 2), "nothing acknowledged"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "agent stopped" in err
    out = subprocess.run([*vigil, "health", "--state-dir", str(state), "--field", "counters.acknowledged"],
                         capture_output=True, text=True, check=True)
    assert int(out.stdout) >= 2
