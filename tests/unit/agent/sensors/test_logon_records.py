"""Logon parsing: PAM audit records and auth.log lines (untrusted text)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from vigil.agent.sensors.logon_records import from_audit, from_auth_log, logon_type

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
