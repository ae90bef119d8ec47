"""The system-log sensor: syslog files followed, journalctl's output read, the budget folding a flood, and a real
journald where one runs."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.integration.agent.conftest import ListSink
from tests.integration.agent.support import wait_for
from vigil.agent.budget import DROP_AGGREGATED, Budget, BudgetLimits
from vigil.agent.clock import SystemClock
from vigil.agent.config import AgentConfig
from vigil.agent.sensors.base import HealthState, SensorContext
from vigil.agent.sensors.logon_sources import journald_unusable
from vigil.agent.sensors.system_log import SystemLogSensor


def rows(sink: ListSink) -> list[dict]:  # type: ignore[type-arg]
    return [r for r in sink.snapshot() if r["table"] == "DeviceSystemLogEvents"]


def test_syslog_files_are_followed_each_with_its_facility(tmp_path: Path, sink: ListSink) -> None:
    syslog, auth = tmp_path / "syslog", tmp_path / "auth.log"
    syslog.write_text("Dec  1 00:00:00 host old[1]: history, not news\n")
    auth.write_text("")
    sensor = SystemLogSensor(SensorContext(sink, SystemClock(), AgentConfig(state_dir=tmp_path)),
                             files=[(str(syslog), None), (str(auth), "auth"), (str(tmp_path / "none"), None)],
                             journal_socket=None)
    health = sensor.start()
    assert health.state is HealthState.ACTIVE and str(syslog) in health.reason and "none" not in health.reason
    try:
        now = datetime.now(UTC).isoformat()
        with syslog.open("a") as f:
            f.write(f"{now} host systemd[1]: Stopping iptables firewall...\n")
        with auth.open("a") as f:
            f.write(f"{now} host sshd[4242]: Corrupted MAC on input. [preauth]\n")
            f.write(f"{now} host useradd[77]: new user: name=x, UID=0, GID=0, home=/root\n")
        assert wait_for(lambda: len(rows(sink)) >= 3, 10), sink.snapshot()
    finally:
        sensor.stop()
    got = {(r["ProcessName"], r["ActionType"], r["Facility"]) for r in rows(sink)}
    assert got == {("systemd", "SystemLogMessage", None), ("sshd", "SshdMessage", "auth"),
                   ("useradd", "AuthMessage", "auth")}
    assert all(r["AdditionalFields"]["Source"] in (str(syslog), str(auth)) for r in rows(sink))


class Losses:
    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = counts

    def record_dropped(self, reason: str, count: int) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + count


FAKE_JOURNALCTL = """
import json, sys, time
entries = [
    {"__REALTIME_TIMESTAMP": str(int(time.time() * 1e6)), "SYSLOG_IDENTIFIER": "sshd", "_PID": "9",
     "SYSLOG_FACILITY": "10", "PRIORITY": "3", "MESSAGE": "error in libcrypto"},
    {"__REALTIME_TIMESTAMP": "1", "_TRANSPORT": "audit", "MESSAGE": "type=EXECVE argc=1 a0=ls"},
    "not an object",
]
entries += [{"__REALTIME_TIMESTAMP": str(int(time.time() * 1e6)), "SYSLOG_IDENTIFIER": "noisy", "_PID": "5",
             "MESSAGE": "the same line"}] * 500
for e in entries:
    print(json.dumps(e), flush=True)
time.sleep(30)
"""


def test_journal_entries_pass_the_budget_and_a_flood_is_folded(tmp_path: Path, sink: ListSink) -> None:
    """journalctl is a stand-in here (journald's presence is a socket in tmp_path), so this runs everywhere."""
    fake = tmp_path / "journalctl.py"
    fake.write_text(FAKE_JOURNALCTL)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "journal.sock"))
    limits = BudgetLimits(rate_limits=(("system_log", 20.0),), aggregate_seconds=0.5)
    losses: dict[str, int] = {}
    budget = Budget(limits, losses=Losses(losses))
    sensor = SystemLogSensor(SensorContext(sink, SystemClock(), AgentConfig(state_dir=tmp_path), budget=budget),
                             files=[], journal=[sys.executable, str(fake)], journal_socket=tmp_path / "journal.sock")
    try:
        if journald_unusable(tmp_path / "journal.sock") is not None:
            pytest.skip(f"journalctl is needed for the journald source: {journald_unusable(tmp_path / 'journal.sock')}")
        assert sensor.start().state is HealthState.ACTIVE
        assert wait_for(lambda: any(r["AdditionalFields"].get("AggregatedCount") for r in rows(sink)), 10), \
            sink.snapshot()
    finally:
        sensor.stop()
        sock.close()
    sshd = [r for r in rows(sink) if r["ProcessName"] == "sshd"]
    assert [(r["ActionType"], r["Facility"], r["SeverityLevel"]) for r in sshd] == [("SshdMessage", "authpriv", "err")]
    assert not [r for r in rows(sink) if "EXECVE" in r["SyslogMessage"]]  # audit records are the audit sensors'
    noisy = [r for r in rows(sink) if r["ProcessName"] == "noisy"]
    folded = sum(r["AdditionalFields"].get("AggregatedCount", 1) for r in noisy)
    assert len(noisy) < 30 and folded == 500  # over the rate: folded into one row with a count, none lost
    assert losses[DROP_AGGREGATED] == folded - len(noisy)  # counted as folded, as the file sensor's are
    assert sensor.health().state is HealthState.ACTIVE  # "not an object" is skipped, not a failure


@pytest.mark.skipif(journald_unusable() is not None, reason=f"no journald here: {journald_unusable()}")
def test_a_message_logged_to_the_real_journal_becomes_a_row(tmp_path: Path, sink: ListSink) -> None:
    marker = f"vigil-test-{uuid.uuid4()}"
    sensor = SystemLogSensor(SensorContext(sink, SystemClock(), AgentConfig(state_dir=tmp_path)), files=[])
    try:
        assert sensor.start().state is HealthState.ACTIVE
        subprocess.run(["logger", "-t", "sshd", "-p", "auth.err", f"Corrupted MAC on input {marker}"], check=True)
        assert wait_for(lambda: [r for r in rows(sink) if marker in r["SyslogMessage"]], 15), sink.snapshot()
    finally:
        sensor.stop()
    row = next(r for r in rows(sink) if marker in r["SyslogMessage"])
    assert (row["ActionType"], row["Facility"], row["SeverityLevel"]) == ("SshdMessage", "auth", "err")
    assert json.dumps(row)  # plain JSON values only
