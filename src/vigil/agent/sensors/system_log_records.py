"""System log entries (journald's JSON, syslog file lines) → DeviceSystemLogEvents rows; pure, no I/O."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from vigil.agent.clock import iso

# Programs -> the action type (Sigma service) their messages are. Names as journald's SYSLOG_IDENTIFIER and
# syslog tags give them, lower-cased; OpenSSH 9.8 logs per connection as sshd-session.
SERVICE_OF_PROGRAM: Mapping[str, str] = {
    "sshd": "SshdMessage", "sshd-session": "SshdMessage",
    "cron": "CronMessage", "crond": "CronMessage", "anacron": "CronMessage", "crontab": "CronMessage",
    "sudo": "SudoMessage", "su": "SuMessage",
    "vsftpd": "VsftpdMessage",
    "clamd": "ClamavMessage", "freshclam": "ClamavMessage", "clamonacc": "ClamavMessage",
    "clamscan": "ClamavMessage", "clamav-milter": "ClamavMessage",
    "guacd": "GuacamoleMessage", "guacamole": "GuacamoleMessage",
}
OTHER = "SystemLogMessage"
AUTH = "AuthMessage"  # another program of facility auth or authpriv (login, useradd, passwd, polkit...)

FACILITIES = ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
              "ftp", "ntp", "security", "console", "clock", *(f"local{n}" for n in range(8)))
SEVERITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
_AUTH_FACILITIES = frozenset({"auth", "authpriv"})
# A message is cut to this many characters: one noisy program must not fill a batch.
MAX_MESSAGE = 8192


@dataclass(frozen=True)
class SystemLogEntry:
    """One message of the system log, whichever source carried it."""

    timestamp: float
    program: str
    message: str
    pid: int | None = None
    facility: str | None = None
    severity: str | None = None
    unit: str | None = None
    source: str = "journald"

    @property
    def action_type(self) -> str:
        return action_type(self.program, self.facility)


def action_type(program: str, facility: str | None) -> str:
    """The service a message belongs to, by the program that logged it (its base name, any case)."""
    name = program.rsplit("/", 1)[-1].lower()
    found = SERVICE_OF_PROGRAM.get(name)
    if found is not None:
        return found
    return AUTH if facility in _AUTH_FACILITIES else OTHER


def _number(value: object) -> int | None:
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _named(table: tuple[str, ...], value: object) -> str | None:
    n = _number(value)
    return table[n] if n is not None and n < len(table) else None


def from_journal(entry: Mapping[str, object]) -> SystemLogEntry | None:
    """An entry as ``journalctl -o json`` prints it; None for one without a message or time."""
    message = entry.get("MESSAGE")
    if isinstance(message, list):  # journalctl prints a message that is not UTF-8 as an array of bytes
        try:
            message = bytes(message).decode("utf-8", "replace")
        except (TypeError, ValueError):
            return None
    usec = _number(entry.get("__REALTIME_TIMESTAMP"))
    if not isinstance(message, str) or usec is None:
        return None
    program = entry.get("SYSLOG_IDENTIFIER") or entry.get("_COMM") or ""
    unit = entry.get("_SYSTEMD_UNIT")
    return SystemLogEntry(
        timestamp=usec / 1e6, program=str(program), message=message[:MAX_MESSAGE],
        pid=_number(entry.get("_PID")) or _number(entry.get("SYSLOG_PID")),
        facility=_named(FACILITIES, entry.get("SYSLOG_FACILITY")),
        severity=_named(SEVERITIES, entry.get("PRIORITY")),
        unit=unit if isinstance(unit, str) else None, source="journald")


# `<PRI>` (when a line is a raw syslog datagram), then an RFC 3339 time (rsyslog's high-precision format,
# Debian's default) or a BSD one ("Dec  7 04:01:10"), the host, and the tag: `program[pid]:` or `program:`.
_LINE = re.compile(
    r"^(?:<(?P<pri>\d{1,3})>)?"
    r"(?:(?P<iso>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?)|(?P<bsd>[A-Z][a-z]{2} [ \d]\d "
    r"\d\d:\d\d:\d\d))\s+(?P<host>\S+)\s+(?P<prog>[^\s\[:]+)(?:\[(?P<pid>\d+)\])?:\s?(?P<msg>.*)$",
    re.DOTALL,
)


def from_syslog_line(line: str, now: datetime, source: str, facility: str | None = None) -> SystemLogEntry | None:
    """One line of a syslog file (syslog, messages, auth.log, secure, cron); `facility` when the file tells it
    (auth.log holds auth and authpriv). None for a line that is no syslog message."""
    m = _LINE.match(line.rstrip("\n"))
    if m is None:
        return None
    severity = None
    if m["pri"] is not None:
        pri = int(m["pri"])
        facility = FACILITIES[pri >> 3] if pri >> 3 < len(FACILITIES) else facility
        severity = SEVERITIES[pri & 7]
    return SystemLogEntry(timestamp=_time(m, now), program=m["prog"], message=m["msg"][:MAX_MESSAGE],
                          pid=int(m["pid"]) if m["pid"] else None, facility=facility, severity=severity,
                          source=source)


def _time(m: re.Match[str], now: datetime) -> float:
    if m["iso"]:
        ts = datetime.fromisoformat(m["iso"].replace("Z", "+00:00"))
        return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()
    # BSD syslog has no year and local time: this year, unless that is more than a day ahead (December's
    # lines read in January).
    local = datetime.strptime(f"{now.year} {m['bsd']}", "%Y %b %d %H:%M:%S").astimezone()
    if local - now > timedelta(days=1):
        local = local.replace(year=now.year - 1)
    return local.timestamp()


def to_row(entry: SystemLogEntry) -> dict[str, Any]:
    """The DeviceSystemLogEvents row of an entry (DeviceId, DeviceName and ReportId are the agent's to add)."""
    return {
        "table": "DeviceSystemLogEvents",
        "Timestamp": iso(entry.timestamp),
        "ActionType": entry.action_type,
        "ProcessName": entry.program,
        "ProcessId": entry.pid,
        "Facility": entry.facility,
        "SeverityLevel": entry.severity,
        "SystemdUnit": entry.unit,
        "SyslogMessage": entry.message,
        "AdditionalFields": {"Source": entry.source},
    }
