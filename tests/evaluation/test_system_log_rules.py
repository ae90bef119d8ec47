"""SigmaHQ's Linux `builtin` log rules bind to the system-log sensor's rows and fire on their service's messages."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from vigil.agent.sensors.system_log_records import from_syslog_line, to_row
from vigil.detect import load_rules

pytestmark = pytest.mark.evaluation

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("VIGIL_SHARED_DATA", REPO.parent / "shared" / "data"))
BUILTIN = DATA / "sigma" / "rules" / "linux" / "builtin"

if not BUILTIN.is_dir():
    pytest.skip(f"third-party corpus absent under {DATA} (set VIGIL_SHARED_DATA)", allow_module_level=True)

# (syslog line, facility the file tells, the rule file expected to fire)
CASES = [
    ("sshd[812]: Corrupted MAC on input. [preauth]", "auth", "sshd/lnx_sshd_susp_ssh.yml"),
    ("CRON[77]: (root) REPLACE (alice)", "cron", "cron/lnx_cron_crontab_file_modification.yml"),
    ("systemd[1]: stopping iptables", None, "syslog/lnx_syslog_security_tools_disabling_syslog.yml"),
    ("named[9]: client 10.0.0.9#5353: zone transfer 'corp.example/AXFR/IN' denied AXFR from 10.0.0.9", None,
     "syslog/lnx_syslog_susp_named.yml"),
    ("vsftpd[3]: Connection refused: too many sessions for this address.", "ftp",
     "vsftpd/lnx_vsftpd_susp_error_messages.yml"),
    ("clamd[4]: /tmp/x.php: Php.Webshell-1 FOUND", "daemon", "clamav/lnx_clamav_relevant_message.yml"),
    ("guacd[5]: Joining existing connection (2 users now present)", None,
     "guacamole/lnx_guacamole_susp_guacamole.yml"),
    ("useradd[6]: new user: name=john, UID=0, GID=0, home=/home/john, shell=/bin/bash", "auth",
     "lnx_privileged_user_creation.yml"),
]


@pytest.mark.parametrize(("line", "facility", "rule_file"), CASES, ids=[c[2] for c in CASES])
def test_each_builtin_rule_fires_on_its_service_s_message(tmp_path: Path, line: str, facility: str | None,
                                                           rule_file: str) -> None:
    report = load_rules([BUILTIN], cache_dir=tmp_path)
    assert not report.errors
    entry = from_syslog_line(f"Dec  7 03:10:00 host {line}", datetime(2026, 12, 7, tzinfo=UTC), "f", facility)
    assert entry is not None
    row = {k: v for k, v in to_row(entry).items() if k != "table"}
    fired = {Path(h.path).relative_to(BUILTIN).as_posix() for h in
             report.ruleset.match_telemetry("DeviceSystemLogEvents", row)}
    assert rule_file in fired
