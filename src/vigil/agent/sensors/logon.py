"""The logon sensor: PAM records from the audit feed, or an auth log followed like tail -F → DeviceLogonEvents."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from vigil.agent.clock import iso
from vigil.agent.errors import SensorUnavailable
from vigil.agent.sensors.audit_events import SyscallEvent
from vigil.agent.sensors.audit_feed import AuditAttachment, Subscription
from vigil.agent.sensors.audit_netlink import AuditRuleSession, build_user_message_rule, open_multicast, rule_key_for
from vigil.agent.sensors.audit_parse import AUDIT_USER_FIRST, AUDIT_USER_LAST
from vigil.agent.sensors.base import HealthState, Row, SensorContext, SensorFaults, SensorHealth, SensorThread
from vigil.agent.sensors.logon_records import Logon, from_audit, from_auth_log, is_local_admin, logon_type
from vigil.agent.sensors.net_records import ip_type

log = logging.getLogger(__name__)


class AuthLogFollower:
    """Reads lines appended to a log file, surviving rotation (a new inode or a truncated file)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._f = open(path, "rb")  # noqa: SIM115 - kept open while following
        self._f.seek(0, os.SEEK_END)  # history is not news
        self._ino = os.fstat(self._f.fileno()).st_ino
        self._partial = b""

    def close(self) -> None:
        self._f.close()

    def lines(self) -> list[str]:
        out = self._read()
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return out  # between rotation and re-creation
        if st.st_ino != self._ino or st.st_size < self._f.tell():
            self._f.close()
            self._f = open(self.path, "rb")  # noqa: SIM115 - the rotated-in file, from its start
            self._ino = st.st_ino
            self._partial = b""
            out += self._read()
        return out

    def _read(self) -> list[str]:
        data = self._partial + self._f.read()
        *complete, self._partial = data.split(b"\n")
        return [c.decode("utf-8", "replace") for c in complete if c]


class LogonSensor:
    name = "logon"

    def __init__(self, ctx: SensorContext) -> None:
        self._ctx = ctx
        self._audit = AuditAttachment(ctx.audit)
        self._follower: AuthLogFollower | None = None
        self._thread = SensorThread("vigil-sensor-logon")
        self._health = SensorHealth(HealthState.UNAVAILABLE, "not started")
        self.provider = ""
        self.faults = SensorFaults(log, "logon sensor failed to handle a record")

    def _auth_log(self) -> Path | None:
        return next((Path(p) for p in self._ctx.config.auth_log_paths if Path(p).is_file()), None)

    def _no_log(self) -> str:
        return f"no auth log at {', '.join(self._ctx.config.auth_log_paths)} (journal and wtmp are not read)"

    def probe(self) -> SensorHealth:
        if self._ctx.config.use_audit:
            try:
                open_multicast(rcvbuf=1 << 16).close()
                return SensorHealth.active()
            except SensorUnavailable as e:
                reason = f"audit: {e}"
        else:
            reason = "audit disabled by configuration"
        path = self._auth_log()
        if path is not None:
            return SensorHealth(HealthState.DEGRADED, f"{reason}; following {path}")
        return SensorHealth(HealthState.UNAVAILABLE, f"{reason}; {self._no_log()}")

    def start(self) -> SensorHealth:
        reason = "audit disabled by configuration"
        if self._ctx.config.use_audit:
            try:
                # User-space messages only; syscall records are not this sensor's.
                user_types = frozenset(range(AUDIT_USER_FIRST, AUDIT_USER_LAST + 1))
                key = rule_key_for(os.getpid(), "logon")
                # PAM records flow whenever audit is on; the rule keeps audit on while this agent runs.
                self._audit.attach(Subscription(self.name, self, record_types=user_types),
                                   AuditRuleSession(key, [build_user_message_rule(key)]))
            except (SensorUnavailable, OSError) as e:
                reason = f"audit unavailable ({e})"
        if self._audit.attached:
            self.provider = "audit"
            self._health = SensorHealth.active()
            return self._health  # the shared audit feed's thread calls on_audit
        path = self._auth_log()
        if path is None:
            self._health = SensorHealth(HealthState.UNAVAILABLE, f"{reason}; {self._no_log()}")
            return self._health
        self._follower = AuthLogFollower(path)
        self.provider = "auth_log"
        self._health = SensorHealth(HealthState.DEGRADED, f"{reason}; following {path}")
        self._thread.start(self._log_loop)
        return self._health

    def stop(self) -> None:
        self._thread.stop()
        self._audit.detach()
        if self._follower is not None:
            self._follower.close()
            self._follower = None

    def health(self) -> SensorHealth:
        return self.faults.degrade(self._health)

    # -- audit provider (called on the shared audit feed's thread) -----------------------------

    def on_audit(self, events: Sequence[SyscallEvent], records: Sequence[tuple[int, bytes]], now: float) -> None:
        rows: list[Row] = []
        for mtype, payload in records:
            try:
                logon = from_audit(mtype, payload)
                if logon is not None:
                    rows.append(self._row(logon))
            except Exception:  # keep the sensor alive; counted and shown in health
                self.faults.failed()
        if rows:
            self._ctx.sink.append(rows)

    def on_tick(self, now: float) -> None:
        pass  # nothing waits: every record is a row or nothing

    def on_overflow(self) -> None:
        self.faults.overflows += 1
        self._ctx.budget.record("kernel_overflow", 1)

    def _log_loop(self) -> None:
        assert self._follower is not None
        while not self._thread.stopping.wait(0.5):
            rows: list[Row] = []
            try:
                now = self._ctx.clock.now()
                for line in self._follower.lines():
                    logon = from_auth_log(line, now)
                    if logon is not None:
                        rows.append(self._row(logon))
            except Exception:  # keep the sensor alive; counted and shown in health
                self.faults.failed()
            if rows:
                self._ctx.sink.append(rows)

    def _row(self, logon: Logon) -> Row:
        row: Row = {
            "table": "DeviceLogonEvents",
            "Timestamp": iso(logon.timestamp),
            "ActionType": "LogonSuccess" if logon.success else "LogonFailed",
            "AccountName": logon.account,
            "AccountDomain": os.uname().nodename,
            "LogonType": logon_type(logon.service, logon.terminal),
            "RemoteIP": logon.remote_ip,
            "RemoteIPType": ip_type(logon.remote_ip) if logon.remote_ip else None,
            "RemotePort": logon.remote_port,
            "RemoteDeviceName": logon.remote_host,
            "FailureReason": logon.failure_reason,
            "IsLocalAdmin": is_local_admin(logon.account) if logon.account else None,
            "AdditionalFields": {"Service": logon.service, "Terminal": logon.terminal, "Source": logon.source},
        }
        if logon.pid > 0:
            initiating = self._ctx.processes.initiating(logon.pid)
            if "InitiatingProcessFileName" not in initiating and logon.exe:  # gone already: the record names it
                initiating.update(InitiatingProcessFileName=logon.exe.rsplit("/", 1)[-1],
                                  InitiatingProcessFolderPath=logon.exe)
            row.update(initiating)
        return row
