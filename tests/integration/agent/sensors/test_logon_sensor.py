"""The logon sensor: `su` to a throwaway user through PAM/audit; the fallbacks journald, auth log and wtmp/btmp."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.integration.agent.conftest import ListSink
from tests.integration.agent.support import wait_for
from tests.unit.agent.sensors.test_utmp import DEAD_PROCESS, LOGIN_PROCESS, utmp
from vigil.agent.clock import SystemClock
from vigil.agent.config import AgentConfig
from vigil.agent.sensors.base import HealthState, SensorContext
from vigil.agent.sensors.logon import LogonSensor
from vigil.agent.sensors.logon_sources import AuthLogFollower, JournalFollower, UtmpFollower, journald_unusable


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
    assert "not read: journald, auth_log, wtmp" in sensor.health().reason
    row = next(r for r in logons(sink) if r["AccountName"] == user)
    assert row["ActionType"] == "LogonSuccess" and row["LogonType"] == "Interactive"
    assert row["InitiatingProcessFileName"] == "su" and row["IsLocalAdmin"] is False
    assert row["AdditionalFields"]["Source"] == "audit"


def test_auth_log_lines_become_logon_rows(tmp_path: Path, sink: ListSink) -> None:
    log = tmp_path / "auth.log"
    log.write_text("2020-01-01T00:00:00+00:00 host sshd[1]: Accepted password for old from 1.2.3.4 port 1 ssh2\n")
    # journald left out: where it runs it would come before the auth log.
    config = AgentConfig(state_dir=tmp_path, use_audit=False, logon_sources=("audit", "auth_log"),
                         auth_log_paths=(str(tmp_path / "none"), str(log)))
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


def wtmp_config(tmp_path: Path, **kw: object) -> AgentConfig:
    """No audit, no auth log: the wtmp/btmp files in tmp_path are the source (journald is left out of
    the order so that a machine where it runs still reaches wtmp)."""
    settings: dict[str, object] = dict(
        state_dir=tmp_path, use_audit=False, logon_sources=("audit", "auth_log", "wtmp"),
        auth_log_paths=(str(tmp_path / "no-auth.log"),), wtmp_path=tmp_path / "wtmp", btmp_path=tmp_path / "btmp")
    settings.update(kw)
    return AgentConfig(**settings)  # type: ignore[arg-type]


def test_wtmp_sessions_and_btmp_failures_become_logon_rows(tmp_path: Path, sink: ListSink) -> None:
    wtmp, btmp = tmp_path / "wtmp", tmp_path / "btmp"
    wtmp.write_bytes(utmp(user="old", host="192.0.2.1", addr="192.0.2.1"))
    btmp.write_bytes(b"")
    sshd = subprocess.Popen(["sleep", "30"])  # a live pid for the record, as sshd's session process would be
    sensor = LogonSensor(SensorContext(sink, SystemClock(), wtmp_config(tmp_path)))
    health = sensor.start()
    try:
        assert health.state is HealthState.DEGRADED and sensor.provider == "wtmp", health
        assert f"sessions from {wtmp}, failed logins from {btmp}" in health.reason
        now = int(time.time())
        session = utmp(pid=sshd.pid, line="pts/7", user="alice", host="93.184.216.34", addr="93.184.216.34", sec=now)
        with wtmp.open("ab") as f:
            f.write(session[:200])  # a writer caught half-way: nothing yet, the rest completes the record
            f.flush()
            time.sleep(0.7)
            f.write(session[200:] + utmp(DEAD_PROCESS, user="", sec=now))
        with btmp.open("ab") as f:
            f.write(utmp(LOGIN_PROCESS, pid=0, line="ssh:notty", user="root", host="2001:db8::66", sec=now))
        assert wait_for(lambda: len(logons(sink)) >= 2, 10), sink.snapshot()
        time.sleep(0.6)  # one more poll: nothing else may come
    finally:
        sensor.stop()
        sshd.kill()
        sshd.wait()
    rows = logons(sink)
    assert len(rows) == 2, rows
    ok = next(r for r in rows if r["ActionType"] == "LogonSuccess")
    failed = next(r for r in rows if r["ActionType"] == "LogonFailed")
    assert (ok["AccountName"], ok["LogonType"], ok["RemoteIP"], ok["RemoteIPType"]) == \
        ("alice", "RemoteInteractive", "93.184.216.34", "Public")
    assert ok["AdditionalFields"] == {"Service": "sshd", "Terminal": "/dev/pts/7", "Source": "wtmp"}
    assert ok["InitiatingProcessId"] == sshd.pid and ok["InitiatingProcessFileName"] == "sleep"
    assert datetime.fromisoformat(ok["Timestamp"]).timestamp() == pytest.approx(now + 0.25)
    assert (failed["AccountName"], failed["LogonType"], failed["RemoteIP"], failed["FailureReason"]) == \
        ("root", "RemoteInteractive", "2001:db8::66", "authentication failure")
    assert failed["AdditionalFields"]["Source"] == "btmp" and failed["IsLocalAdmin"] is True


def test_wtmp_follower_reads_a_rotated_and_a_truncated_file_from_the_start(tmp_path: Path) -> None:
    wtmp = tmp_path / "wtmp"
    wtmp.write_bytes(utmp(user="history") + utmp(user="partial")[:50])  # a record being written at start
    follower = UtmpFollower(wtmp)
    try:
        with wtmp.open("ab") as f:
            f.write(utmp(user="partial")[50:])
        assert [r.user for r in follower.records()] == ["partial"], "history is skipped, a record in progress is not"
        with wtmp.open("ab") as f:
            f.write(utmp(user="before-rotation"))
        wtmp.rename(tmp_path / "wtmp.1")  # logrotate's create mode: a new file under the old name
        wtmp.write_bytes(utmp(user="rotated-in"))
        assert [r.user for r in follower.records()] == ["before-rotation", "rotated-in"]
        with wtmp.open("r+b") as f:  # copytruncate mode: same inode, shorter file
            f.truncate(0)
        with wtmp.open("ab") as f:
            f.write(utmp(user="after-truncation"))
        assert [r.user for r in follower.records()] == ["after-truncation"]
        assert follower.records() == []
    finally:
        follower.close()


def test_fallback_order_names_why_each_earlier_source_is_not_used(tmp_path: Path, sink: ListSink) -> None:
    (tmp_path / "wtmp").write_bytes(b"")
    config = wtmp_config(tmp_path)
    sensor = LogonSensor(SensorContext(sink, SystemClock(), config))
    probed = sensor.probe()
    health = sensor.start()
    sensor.stop()
    assert probed == health and sensor.provider == "wtmp"
    assert health.reason.startswith(f"source wtmp: sessions from {config.wtmp_path}; no {config.btmp_path}")
    assert f"not usable: audit (disabled by configuration); auth_log (no file at {tmp_path}/no-auth.log)" \
        in health.reason
    log = tmp_path / "auth.log"
    log.write_text("")
    health = LogonSensor(SensorContext(sink, SystemClock(), wtmp_config(tmp_path, auth_log_paths=(str(log),)))).probe()
    assert health.reason == (f"source auth_log: following {log}; not usable: audit (disabled by configuration); "
                             "not read: wtmp (they would report the same logons again)")


def test_no_usable_source_is_unavailable_with_every_reason(tmp_path: Path, sink: ListSink) -> None:
    sensor = LogonSensor(SensorContext(sink, SystemClock(), wtmp_config(tmp_path, logon_sources=("auth_log", "wtmp"))))
    health = sensor.start()
    sensor.stop()
    assert health.state is HealthState.UNAVAILABLE and sensor.provider == ""
    assert health.reason == (f"no logon source: auth_log (no file at {tmp_path}/no-auth.log); "
                             f"wtmp (no file at {tmp_path}/wtmp)")


@pytest.mark.skipif(journald_unusable() is None, reason="journald runs here, so it is not skipped over")
def test_without_journald_the_next_source_is_used_and_the_reason_given(tmp_path: Path, sink: ListSink) -> None:
    (tmp_path / "wtmp").write_bytes(b"")
    config = wtmp_config(tmp_path, logon_sources=("audit", "journald", "auth_log", "wtmp"))
    sensor = LogonSensor(SensorContext(sink, SystemClock(), config))
    health = sensor.start()
    sensor.stop()
    assert sensor.provider == "wtmp"
    assert f"audit (disabled by configuration); journald ({journald_unusable()}); auth_log (no file" in health.reason


@pytest.mark.skipif(journald_unusable() is not None, reason=f"journald source: {journald_unusable()}")
def test_a_journal_auth_message_is_a_logon_row(tmp_path: Path, sink: ListSink) -> None:
    config = AgentConfig(state_dir=tmp_path, use_audit=False, logon_sources=("journald",))
    sensor = LogonSensor(SensorContext(sink, SystemClock(), config))
    health = sensor.start()
    user = f"vgj{uuid.uuid4().hex[:8]}"
    try:
        assert sensor.provider == "journald" and health.state is HealthState.DEGRADED, health
        time.sleep(1)  # journalctl has started following
        subprocess.run(["logger", "-p", "authpriv.notice", "-t", "sshd",
                        f"Accepted password for {user} from 198.51.100.20 port 40022 ssh2"], check=True)
        assert wait_for(lambda: [r for r in logons(sink) if r["AccountName"] == user], 10), sink.snapshot()
    finally:
        sensor.stop()
    row = next(r for r in logons(sink) if r["AccountName"] == user)
    assert (row["ActionType"], row["RemoteIP"], row["RemotePort"], row["AdditionalFields"]["Source"]) == \
        ("LogonSuccess", "198.51.100.20", 40022, "journald")


def test_journal_follower_reads_a_child_process_and_reports_how_it_ended() -> None:
    script = 'echo \'{"MESSAGE": "one"}\'; echo \'{"MESSAGE": "two"}\'; echo "Failed to open journal" >&2; exit 3'
    finished = JournalFollower(["sh", "-c", script])
    try:
        assert list(finished.lines()) == [b'{"MESSAGE": "one"}\n', b'{"MESSAGE": "two"}\n']
        assert finished.exit_reason() == "journalctl exited with status 3: Failed to open journal"
    finally:
        finished.close()
    running = JournalFollower([sys.executable, "-c", "import time; print('{}', flush=True); time.sleep(60)"])
    lines = running.lines()
    assert next(lines) == b"{}\n", "a line is handed on as soon as it is written"
    started = time.monotonic()
    running.terminate()
    assert list(lines) == [] and time.monotonic() - started < 3
    running.close()


def test_auth_log_written_again_after_copytruncate_is_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text("old line\n")
    follower = AuthLogFollower(log)
    try:
        with log.open("a") as f:
            f.write("first line\nunfinished")
        assert follower.lines() == ["first line"]
        with log.open("r+") as f:  # truncated, then written past the old length before the next read
            f.truncate(0)
            f.write("after truncation, a line longer than everything before it\n")
        assert follower.lines() == ["after truncation, a line longer than everything before it"]
    finally:
        follower.close()


def test_a_logon_both_sources_see_is_reported_once(tmp_path: Path, sink: ListSink) -> None:
    log, wtmp = tmp_path / "auth.log", tmp_path / "wtmp"
    log.write_text("")
    wtmp.write_bytes(b"")
    sensor = LogonSensor(SensorContext(sink, SystemClock(), wtmp_config(tmp_path, auth_log_paths=(str(log),))))
    assert "not read: wtmp" in sensor.start().reason
    try:
        now = datetime.now(UTC)
        with log.open("a") as f:
            f.write(f"{now.isoformat()} host sshd[4242]: Accepted password for erin from 192.0.2.8 port 22 ssh2\n")
        wtmp.write_bytes(utmp(user="erin", host="192.0.2.8", addr="192.0.2.8", sec=int(now.timestamp())))
        assert wait_for(lambda: logons(sink), 10)
        time.sleep(1.2)  # two more polls: a second row would be here by now
    finally:
        sensor.stop()
    assert [(r["AccountName"], r["AdditionalFields"]["Source"]) for r in logons(sink)] == [("erin", "auth_log")]
