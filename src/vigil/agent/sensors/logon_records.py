"""Logons from PAM's audit records (USER_START, failed USER_AUTH/USER_LOGIN), auth.log lines, journal entries
and wtmp/btmp records."""

from __future__ import annotations

import grp
import ipaddress
import pwd
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from vigil.agent.sensors.audit_parse import FIELD, AuditParseError, decode_value, parse_record
from vigil.agent.sensors.utmp import UtmpRecord, UtmpType

AUDIT_USER_AUTH = 1100
AUDIT_USER_ACCT = 1101
AUDIT_USER_START = 1105
AUDIT_USER_LOGIN = 1112

_ADMIN_GROUPS = ("sudo", "wheel", "admin")


@dataclass(frozen=True)
class Logon:
    """One sign-in (or failed one), whichever source saw it."""

    timestamp: float
    success: bool
    account: str
    service: str  # the program that authenticated: sshd, su, login, cron...
    pid: int
    remote_ip: str | None = None
    remote_host: str | None = None
    remote_port: int | None = None
    terminal: str | None = None
    failure_reason: str | None = None
    source: str = "audit"
    exe: str = ""  # the authenticating program's path, when the source names it


def logon_type(service: str, terminal: str | None) -> str:
    """Defender's LogonType from the authenticating program."""
    if service == "sshd":
        return "RemoteInteractive" if terminal and terminal.startswith(("/dev/pts", "ssh")) else "Network"
    if service in ("cron", "crond", "atd"):
        return "Batch"
    if service.startswith("systemd"):
        return "Service"
    return "Interactive"


def is_local_admin(account: str) -> bool:
    """Root, or a member of a group that may use sudo."""
    try:
        user = pwd.getpwnam(account)
    except KeyError:
        return False
    if user.pw_uid == 0:
        return True
    for name in _ADMIN_GROUPS:
        try:
            g = grp.getgrnam(name)
        except KeyError:
            continue
        if account in g.gr_mem or user.pw_gid == g.gr_gid:
            return True
    return False


def _known(value: str | None) -> str | None:
    return None if value in (None, "", "?", "(none)") else value


def from_audit(record_type: int, payload: bytes) -> Logon | None:
    """A Logon from a PAM USER_* record, or None when the record is not a logon outcome."""
    if record_type not in (AUDIT_USER_AUTH, AUDIT_USER_ACCT, AUDIT_USER_START, AUDIT_USER_LOGIN):
        return None
    try:
        rec = parse_record(record_type, payload)
    except AuditParseError:
        return None
    msg = rec.fields.get("msg", "")
    inner = dict(FIELD.findall(msg.strip("'")))
    success = inner.get("res") == "success"
    # A session start is the sign-in; failures are reported where authentication failed.
    if success and record_type != AUDIT_USER_START:
        return None
    if not success and record_type == AUDIT_USER_START:
        return None
    account = decode_value(inner.get("acct", "")) or ""
    if not account and inner.get("id", "").isdigit():
        try:
            account = pwd.getpwuid(int(inner["id"])).pw_name
        except KeyError:
            account = inner["id"]
    exe = decode_value(inner.get("exe", "")) or ""
    op = inner.get("op", "")
    return Logon(
        timestamp=rec.timestamp,
        success=success,
        account=account,
        service=exe.rsplit("/", 1)[-1],
        pid=int(rec.fields.get("pid", "-1")),
        remote_ip=_known(inner.get("addr")),
        remote_host=_known(decode_value(inner.get("hostname", ""))),
        terminal=_known(inner.get("terminal")),
        failure_reason=None if success else f"{op or 'PAM'} failed",
        exe=exe,
    )


_SYSLOG_TIME = re.compile(
    r"^(?:(?P<iso>\d{4}-\d\d-\d\dT[\d:.]+(?:Z|[+-]\d\d:?\d\d)?)|(?P<bsd>\w{3} [ \d]\d \d\d:\d\d:\d\d))\s+\S+\s+"
)
_PROGRAM = re.compile(r"(?P<prog>[\w.\-/]+)\[(?P<pid>\d+)\]:\s*")
_SSH_OK = re.compile(r"Accepted (?P<method>\S+) for (?P<user>\S+) from (?P<ip>\S+) port (?P<port>\d+)")
_SSH_FAIL = re.compile(
    r"Failed (?P<method>\S+) for (?:invalid user )?(?P<user>\S+) from (?P<ip>\S+) port (?P<port>\d+)"
)
_PAM_OPEN = re.compile(r"pam_unix\((?P<svc>[\w\-]+):session\): session opened for user (?P<user>[^\s(]+)")
_PAM_FAIL = re.compile(r"pam_unix\((?P<svc>[\w\-]+):auth\): authentication failure;.*?\buser=(?P<user>\S+)")
# OpenSSH 9.8 moved the per-connection work, and its log lines, to sshd-session.
_SSHD = ("sshd", "sshd-session")
_X_DISPLAY = re.compile(r":\d+(?:\.\d+)?")  # ut_host of a graphical session: local, not a remote host


def _line_time(m: re.Match[str] | None, now: datetime) -> float:
    if m is None:
        return now.timestamp()
    if m.group("iso"):
        ts = datetime.fromisoformat(m.group("iso").replace("Z", "+00:00"))
        return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()
    # BSD syslog has no year and local time; the current year is the only reasonable guess.
    local = datetime.strptime(f"{now.year} {m.group('bsd')}", "%Y %b %d %H:%M:%S")
    return local.astimezone().timestamp()


def from_auth_log(line: str, now: datetime) -> Logon | None:
    """A Logon from one auth.log/secure line (sshd accepted/failed, PAM session opened/auth failure)."""
    tm = _SYSLOG_TIME.match(line)
    rest = line[tm.end():] if tm else line
    pm = _PROGRAM.match(rest)
    if pm is None:
        return None
    return from_auth_message(pm.group("prog"), int(pm.group("pid")), rest[pm.end():], _line_time(tm, now), "auth_log")


def from_auth_message(program: str, pid: int, text: str, when: float, source: str) -> Logon | None:
    """A Logon from the message of one auth/authpriv syslog entry, however it was carried (file or journal)."""
    prog = program.rsplit("/", 1)[-1]
    if prog in _SSHD:
        if m := _SSH_OK.search(text):
            return Logon(when, True, m["user"], "sshd", pid, m["ip"], None, int(m["port"]), "ssh", source=source)
        if m := _SSH_FAIL.search(text):
            return Logon(when, False, m["user"], "sshd", pid, m["ip"], None, int(m["port"]), "ssh",
                         f"{m['method']} rejected", source=source)
        return None  # sshd's PAM lines repeat what the lines above say
    if m := _PAM_OPEN.search(text):
        return Logon(when, True, m["user"], m["svc"], pid, source=source)
    if m := _PAM_FAIL.search(text):
        return Logon(when, False, m["user"], m["svc"], pid, failure_reason="authentication failure", source=source)
    return None


def from_journal(entry: Mapping[str, object]) -> Logon | None:
    """A Logon from one journal entry as ``journalctl -o json`` prints it (the same messages auth.log holds)."""
    message = entry.get("MESSAGE")
    if isinstance(message, list):  # journalctl prints a message that is not UTF-8 as an array of bytes
        try:
            message = bytes(message).decode("utf-8", "replace")
        except (TypeError, ValueError):
            return None
    program, pid, usec = entry.get("SYSLOG_IDENTIFIER"), entry.get("_PID", entry.get("SYSLOG_PID")), \
        entry.get("__REALTIME_TIMESTAMP")
    if not (isinstance(message, str) and isinstance(program, str) and isinstance(pid, str) and pid.isdigit()
            and isinstance(usec, str) and usec.isdigit()):
        return None
    logon = from_auth_message(program, int(pid), message, int(usec) / 1e6, "journald")
    exe = entry.get("_EXE")
    return replace(logon, exe=exe) if logon is not None and isinstance(exe, str) else logon


def from_utmp(record: UtmpRecord, failed: bool) -> Logon | None:
    """A Logon from a wtmp USER_PROCESS record, or from any btmp record (``failed``: each is a failed login).

    utmp does not name the program; a session on a pseudo-terminal from a remote host, or on sshd's
    "ssh:notty", is taken for sshd and any other for login, so LogonType matches what PAM reports."""
    if not record.user or (not failed and record.type != UtmpType.USER_PROCESS):
        return None
    remote = not _X_DISPLAY.fullmatch(record.host) if record.host else record.address is not None
    try:
        host_ip: str | None = str(ipaddress.ip_address(record.host))
    except ValueError:
        host_ip = None  # a host name (sshd with UseDNS) or empty: the address field has the IP
    terminal = record.line if ":" in record.line or not record.line else f"/dev/{record.line}"
    sshd = record.line.startswith("ssh") or (remote and record.line.startswith("pts/"))
    return Logon(
        timestamp=record.timestamp,
        success=not failed,
        account=record.user,
        service="sshd" if sshd else "login",
        pid=record.pid,
        remote_ip=(host_ip or record.address) if remote else None,
        remote_host=record.host if remote and host_ip is None else None,
        terminal=terminal or None,
        failure_reason="authentication failure" if failed else None,
        source="btmp" if failed else "wtmp",
    )
