"""The logon sensor: `su` to a throwaway user through PAM/audit, and auth-log lines as the fallback."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.integration.agent.conftest import ListSink
from tests.integration.agent.support import wait_for
from vigil.agent.clock import SystemClock
from vigil.agent.config import AgentConfig
from vigil.agent.sensors.base import HealthState, SensorContext
from vigil.agent.sensors.logon import LogonSensor


def logons(sink: ListSink) -> list[dict]:  # type: ignore[type-arg]
    return [r for r in sink.snapshot() if r["table"] == "DeviceLogonEvents"]


@pytest.mark.root
@pytest.mark.requires_audit
def test_su_to_a_test_user_is_a_logon_success(tmp_path: Path, sink: ListSink) -> None:
    user = f"vgt{os.getpid() % 100000}"
    if subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", user], capture_output=True).returncode:
        pytest.skip("useradd is not available here")
    sensor = LogonSensor(SensorContext(sink, SystemClock(), AgentConfig(state_dir=tmp_path)))
    try:
        assert sensor.start().state is HealthState.ACTIVE, sensor.health()
        su = subprocess.run(["su", "-s", "/bin/sh", user, "-c", "true"], capture_output=True, text=True)
        if su.returncode:
            pytest.skip(f"su refused here: {su.stderr.strip()}")
        assert wait_for(lambda: [r for r in logons(sink) if r["AccountName"] == user], 10), sink.snapshot()
    finally:
        sensor.stop()
        subprocess.run(["userdel", user], capture_output=True)
    row = next(r for r in logons(sink) if r["AccountName"] == user)
    assert row["ActionType"] == "LogonSuccess" and row["LogonType"] == "Interactive"
    assert row["InitiatingProcessFileName"] == "su" and row["IsLocalAdmin"] is False
    assert row["AdditionalFields"]["Source"] == "audit"


def test_auth_log_lines_become_logon_rows(tmp_path: Path, sink: ListSink) -> None:
    log = tmp_path / "auth.log"
    log.write_text("2020-01-01T00:00:00+00:00 host sshd[1]: Accepted password for old from 1.2.3.4 port 1 ssh2\n")
    config = AgentConfig(state_dir=tmp_path, use_audit=False, auth_log_paths=(str(tmp_path / "none"), str(log)))
    sensor = LogonSensor(SensorContext(sink, SystemClock(), config))
    health = sensor.start()
    assert health.state is HealthState.DEGRADED and str(log) in health.reason
    try:
        now = datetime.now(UTC).isoformat()
        with log.open("a") as f:
            f.write(f"{now} host sshd[4242]: Accepted publickey for alice from 93.184.216.34 port 50022 ssh2\n")
            f.write(f"{now} host sshd[4243]: Failed password for invalid user bob from 10.1.2.3 port 6 ssh2\n")
        assert wait_for(lambda: len(logons(sink)) >= 2, 10)
    finally:
        sensor.stop()
    ok, failed = logons(sink)
    assert (ok["ActionType"], ok["AccountName"], ok["RemoteIP"], ok["RemotePort"]) == \
        ("LogonSuccess", "alice", "93.184.216.34", 50022)
    assert ok["RemoteIPType"] == "Public" and ok["LogonType"] == "RemoteInteractive"
    assert (failed["ActionType"], failed["AccountName"], failed["RemoteIPType"]) == ("LogonFailed", "bob", "Private")
    assert failed["FailureReason"] == "password rejected"
    assert all(r["AccountName"] != "old" for r in logons(sink)), "lines from before the start are history"
