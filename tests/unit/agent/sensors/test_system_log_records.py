"""System-log entries: journalctl's JSON and syslog file lines become DeviceSystemLogEvents rows, and a `service:
sshd` Sigma rule fires on them."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from tests.unit.detect.support import rule_yaml
from vigil.agent.sensors.system_log_records import (
    action_type,
    from_journal,
    from_syslog_line,
    to_row,
)
from vigil.core.telemetry import TABLES, validate_events
from vigil.detect import load_rules_text

NOW = datetime(2026, 12, 7, 4, 0, tzinfo=UTC)

# Lines as `journalctl -o json` prints them (fields trimmed to those the parser reads, plus some it ignores).
SSHD_JSON = json.dumps({
    "__CURSOR": "s=1;i=2", "__REALTIME_TIMESTAMP": "1796616000123456", "_TRANSPORT": "syslog",
    "PRIORITY": "3", "SYSLOG_FACILITY": "4", "SYSLOG_IDENTIFIER": "sshd", "_PID": "812", "_COMM": "sshd",
    "_SYSTEMD_UNIT": "ssh.service", "MESSAGE": "Corrupted MAC on input. [preauth]",
})


def test_a_journal_entry_becomes_a_row_with_its_service() -> None:
    entry = from_journal(json.loads(SSHD_JSON))
    assert entry is not None
    row = to_row(entry)
    assert row == {
        "table": "DeviceSystemLogEvents", "Timestamp": "2026-12-07T04:00:00.123456+00:00",
        "ActionType": "SshdMessage", "ProcessName": "sshd", "ProcessId": 812, "Facility": "auth",
        "SeverityLevel": "err", "SystemdUnit": "ssh.service", "SyslogMessage": "Corrupted MAC on input. [preauth]",
        "AdditionalFields": {"Source": "journald"},
    }
    # what the agent sends passes the server's schema check
    stored = validate_events([{**row, "DeviceId": "d1", "ReportId": 1}], "d1", NOW)
    assert stored["DeviceSystemLogEvents"][0]["SyslogMessage"] == "Corrupted MAC on input. [preauth]"


def test_journal_entries_without_identifier_bytes_messages_and_broken_ones() -> None:
    entry = from_journal({"__REALTIME_TIMESTAMP": "1796616000000000", "_COMM": "CRON", "_PID": "77",
                          "SYSLOG_FACILITY": "9", "MESSAGE": list(b"(root) REPLACE (alice)")})
    assert entry is not None and (entry.program, entry.action_type, entry.facility) == ("CRON", "CronMessage", "cron")
    assert entry.message == "(root) REPLACE (alice)"
    bad = from_journal({"__REALTIME_TIMESTAMP": "1", "MESSAGE": [0xFF, 0x41]})
    assert bad is not None and bad.message == "\ufffdA" and bad.action_type == "SystemLogMessage"
    assert from_journal({"MESSAGE": "no time"}) is None
    assert from_journal({"__REALTIME_TIMESTAMP": "1", "MESSAGE": None}) is None
    assert from_journal({"__REALTIME_TIMESTAMP": "x", "MESSAGE": "m"}) is None
    # facility and priority numbers out of range are left out rather than guessed
    odd = from_journal({"__REALTIME_TIMESTAMP": "1", "MESSAGE": "m", "SYSLOG_FACILITY": "99", "PRIORITY": "9"})
    assert odd is not None and (odd.facility, odd.severity) == (None, None)


@pytest.mark.parametrize(("program", "facility", "expected"), [
    ("sshd", None, "SshdMessage"), ("sshd-session", "auth", "SshdMessage"), ("/usr/sbin/sshd", None, "SshdMessage"),
    ("CRON", "cron", "CronMessage"), ("crond", None, "CronMessage"), ("sudo", "authpriv", "SudoMessage"),
    ("su", "auth", "SuMessage"), ("useradd", "auth", "AuthMessage"), ("useradd", None, "SystemLogMessage"),
    ("vsftpd", "ftp", "VsftpdMessage"), ("clamd", "daemon", "ClamavMessage"), ("guacd", None, "GuacamoleMessage"),
    ("named", "daemon", "SystemLogMessage"), ("systemd", "daemon", "SystemLogMessage"),
])
def test_the_service_of_a_message_is_its_program(program: str, facility: str | None, expected: str) -> None:
    assert action_type(program, facility) == expected
    assert expected in TABLES["DeviceSystemLogEvents"].action_types


def test_syslog_lines_in_both_time_formats_and_with_a_priority() -> None:
    iso = from_syslog_line("2026-12-07T03:59:58.000001+01:00 host sudo[4242]:    alice : TTY=pts/0 ; COMMAND=/bin/id\n",
                           NOW, "/var/log/auth.log", "auth")
    assert iso is not None
    assert (iso.program, iso.pid, iso.facility, iso.action_type) == ("sudo", 4242, "auth", "SudoMessage")
    assert iso.message == "   alice : TTY=pts/0 ; COMMAND=/bin/id"
    assert iso.timestamp == datetime(2026, 12, 7, 2, 59, 58, 1, tzinfo=UTC).timestamp()
    bsd = from_syslog_line("Dec  7 03:10:00 host named: denied AXFR from 10.0.0.9", NOW, "/var/log/syslog")
    assert bsd is not None and (bsd.program, bsd.pid, bsd.facility) == ("named", None, None)
    assert datetime.fromtimestamp(bsd.timestamp).month == 12
    raw = from_syslog_line("<86>Dec  7 03:10:00 host su[9]: pam_unix(su:session): session opened", NOW, "udp")
    assert raw is not None and (raw.facility, raw.severity, raw.action_type) == ("authpriv", "info", "SuMessage")


def test_a_bsd_line_from_late_december_read_in_january_is_last_year() -> None:
    entry = from_syslog_line("Dec 31 23:59:00 host cron[1]: x", datetime(2027, 1, 1, 0, 5, tzinfo=UTC), "f")
    assert entry is not None and datetime.fromtimestamp(entry.timestamp).year == 2026


@pytest.mark.parametrize("line", ["", "not a syslog line", "Dec  7 03:10:00 host", "2026-12-07 host prog: m"])
def test_lines_that_are_no_syslog_message_are_left_out(line: str) -> None:
    assert from_syslog_line(line, NOW, "f") is None


def test_a_long_message_is_cut() -> None:
    entry = from_syslog_line("Dec  7 03:10:00 host p: " + "x" * 20_000, NOW, "f")
    assert entry is not None and len(entry.message) == 8192


SSHD_RULE = rule_yaml("""
    keywords:
        - 'Corrupted MAC on input'
        - 'bad client public DH value'
    condition: keywords
""", logsource="product: linux\nservice: sshd", title="Suspicious sshd error")
SYSLOG_RULE = rule_yaml("""
    keywords:
        - 'stopping iptables'
    condition: keywords
""", logsource="product: linux\nservice: syslog", title="Firewall stopped")
AUTH_RULE = rule_yaml("""
    selection_new_user:
        - 'new user'
    selection_uids_gids:
        - 'UID=0,'
    condition: all of selection_*
""", logsource="product: linux\nservice: auth", title="Root user created")


def _row(program: str, message: str, facility: str | None = None) -> dict[str, object]:
    entry = from_syslog_line(f"Dec  7 03:10:00 host {program}[1]: {message}", NOW, "f", facility)
    assert entry is not None
    return {k: v for k, v in to_row(entry).items() if k != "table"}


def test_builtin_service_rules_fire_on_system_log_rows_of_their_service_only() -> None:
    report = load_rules_text(SSHD_RULE + "---\n" + SYSLOG_RULE + "---\n" + AUTH_RULE)
    assert not report.errors and len(report.ruleset) == 3
    rules = report.ruleset

    def fired(row: dict[str, object]) -> list[str]:
        return sorted(h.title for h in rules.match_telemetry("DeviceSystemLogEvents", row))

    assert fired(_row("sshd", "Corrupted MAC on input. [preauth]")) == ["Suspicious sshd error"]
    assert fired(_row("sshd-session", "Bad client public DH value received")) == ["Suspicious sshd error"]
    assert fired(_row("kernel", "Corrupted MAC on input")) == []  # not sshd's message: not sshd's rule
    assert fired(_row("systemd", "Stopping iptables firewall...")) == ["Firewall stopped"]
    assert fired(_row("sshd", "stopping iptables")) == ["Firewall stopped"]  # syslog: every program
    assert fired(_row("useradd", "new user: name=x, UID=0, GID=0, home=/root", "auth")) == ["Root user created"]
    assert fired(_row("useradd", "new user: name=x, UID=0, GID=0, home=/root")) == []  # not of facility auth
    assert fired(_row("sshd", "Accepted publickey for alice")) == []
