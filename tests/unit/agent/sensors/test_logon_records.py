"""Logon parsing: PAM audit records, auth.log lines and journal entries (untrusted text)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from vigil.agent.sensors.logon_records import from_audit, from_auth_log, from_journal, logon_type

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def user_record(op: str, res: str, acct: str = '"alice"', exe: str = "/usr/sbin/sshd", addr: str = "10.0.0.9") -> bytes:
    return (f"audit(1700000000.250:99): pid=812 uid=0 auid=1000 ses=3 msg='op={op} grantors=pam_unix acct={acct}"
            f' exe="{exe}" hostname=laptop addr={addr} terminal=ssh res={res}\'').encode()


def test_session_start_is_the_successful_logon() -> None:
    logon = from_audit(1105, user_record("PAM:session_open", "success"))
    assert logon is not None and logon.success and logon.account == "alice" and logon.service == "sshd"
    assert (logon.remote_ip, logon.remote_host, logon.pid) == ("10.0.0.9", "laptop", 812)
    assert logon.timestamp == 1700000000.25
    assert logon_type(logon.service, logon.terminal) == "RemoteInteractive"


def test_failed_authentication_is_a_failed_logon_and_successful_steps_are_not_logons() -> None:
    failed = from_audit(1100, user_record("PAM:authentication", "failed", acct="6D616C6C6F7279"))
    assert failed is not None and not failed.success and failed.account == "mallory"
    assert failed.failure_reason == "PAM:authentication failed"
    assert from_audit(1100, user_record("PAM:authentication", "success")) is None
    assert from_audit(1106, user_record("PAM:session_close", "success")) is None
    assert from_audit(1105, b"garbage") is None


@pytest.mark.parametrize(("line", "expected"), [
    ("Mar  1 11:59:00 host sshd[77]: Accepted publickey for bob from 198.51.100.4 port 2222 ssh2",
     (True, "bob", "sshd", "198.51.100.4", 2222)),
    ("2026-03-01T11:59:00.1+00:00 host sshd[78]: Failed password for invalid user root from 1.2.3.4 port 9 ssh2",
     (False, "root", "sshd", "1.2.3.4", 9)),
    ("2026-03-01T11:59:00Z host su[79]: pam_unix(su-l:session): session opened for user carol(uid=1001) by (uid=0)",
     (True, "carol", "su-l", None, None)),
    ("2026-03-01T11:59:00Z host sudo[80]: pam_unix(sudo:auth): authentication failure; logname= uid=1000 euid=0"
     " tty=/dev/pts/0 ruser=dave rhost=  user=dave", (False, "dave", "sudo", None, None)),
])
def test_auth_log_lines(line: str, expected: tuple[object, ...]) -> None:
    logon = from_auth_log(line, NOW)
    assert logon is not None
    assert (logon.success, logon.account, logon.service, logon.remote_ip, logon.remote_port) == expected


@pytest.mark.parametrize("line", [
    "", "no program here", "2026-03-01T11:59:00Z host sshd[1]: pam_unix(sshd:session): session opened for user x",
    "2026-03-01T11:59:00Z host kernel[0]: something else",
])
def test_other_lines_are_not_logons(line: str) -> None:
    assert from_auth_log(line, NOW) is None


def journal_line(message: object, identifier: str = "sshd", **extra: object) -> str:
    """One line as ``journalctl -o json`` prints it: every value a string (or a byte array)."""
    entry = {"__REALTIME_TIMESTAMP": "1700000000250000", "SYSLOG_IDENTIFIER": identifier, "_PID": "812",
             "SYSLOG_FACILITY": "10", "_EXE": "/usr/sbin/sshd", "MESSAGE": message, **extra}
    return json.dumps(entry)


def test_journal_entry_is_parsed_by_the_auth_log_parser() -> None:
    line = journal_line("Accepted publickey for bob from 2001:db8::5 port 2222 ssh2: ED25519 SHA256:x")
    logon = from_journal(json.loads(line))
    assert logon is not None and logon.success and logon.source == "journald"
    assert (logon.account, logon.service, logon.remote_ip, logon.remote_port, logon.pid) == \
        ("bob", "sshd", "2001:db8::5", 2222, 812)
    assert logon.timestamp == 1700000000.25 and logon.exe == "/usr/sbin/sshd"
    assert logon_type(logon.service, logon.terminal) == "RemoteInteractive"


def test_journal_pam_failure_and_sshd_session_identifier() -> None:
    pam = json.loads(journal_line("pam_unix(su:auth): authentication failure; logname=x uid=1000 euid=0 tty=pts/1"
                                  " ruser=x rhost=  user=root", identifier="su", _EXE="/usr/bin/su"))
    logon = from_journal(pam)
    assert logon is not None and not logon.success and (logon.account, logon.service) == ("root", "su")
    # OpenSSH 9.8+ logs from sshd-session; it is still sshd's logon.
    session = from_journal(json.loads(journal_line("Failed password for carol from 10.0.0.1 port 5 ssh2",
                                                   identifier="sshd-session")))
    assert session is not None and session.service == "sshd" and session.failure_reason == "password rejected"


def test_journal_message_that_is_not_utf8_arrives_as_bytes() -> None:
    text = "Accepted password for d\xe9nis from 192.0.2.1 port 22 ssh2".encode("latin-1")
    logon = from_journal(json.loads(journal_line(list(text))))
    assert logon is not None and logon.account == "d\ufffdnis" and logon.remote_ip == "192.0.2.1"


@pytest.mark.parametrize("entry", [
    {},
    json.loads(journal_line(None)),
    json.loads(journal_line([300, 1])),
    json.loads(journal_line("Accepted password for x from 1.2.3.4 port 1 ssh2", _PID="abc")),
    {k: v for k, v in json.loads(journal_line("Accepted password for x from 1.2.3.4 port 1 ssh2")).items()
     if k != "__REALTIME_TIMESTAMP"},
    json.loads(journal_line("Server listening on 0.0.0.0 port 22.")),
])
def test_journal_entries_without_a_logon_are_none(entry: dict[str, object]) -> None:
    assert from_journal(entry) is None
