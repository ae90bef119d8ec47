"""The logon sensor: PAM records from the audit feed, else the journal, an auth log or wtmp/btmp → DeviceLogonEvents.

Exactly one source is read: each later one sees a subset of the same logons (journald carries what
syslog writes to auth.log, and every wtmp/btmp entry comes from a program that also logs through PAM),
so reading two would report each logon twice.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from vigil.agent.clock import iso
from vigil.agent.errors import SensorUnavailable
from vigil.agent.sensors.audit_events import SyscallEvent
from vigil.agent.sensors.audit_feed import AuditAttachment, Subscription
from vigil.agent.sensors.audit_netlink import AuditRuleSession, build_user_message_rule, open_multicast, rule_key_for
from vigil.agent.sensors.audit_parse import AUDIT_USER_FIRST, AUDIT_USER_LAST
from vigil.agent.sensors.base import HealthState, Row, SensorContext, SensorFaults, SensorHealth, SensorThread
from vigil.agent.sensors.logon_records import (
    Logon,
    from_audit,
    from_auth_log,
    from_journal,
    from_utmp,
    is_local_admin,
    logon_type,
)
from vigil.agent.sensors.logon_sources import (
    AuthLogFollower,
    JournalFollower,
    UtmpFollower,
    journalctl_command,
    journald_unusable,
)
from vigil.agent.sensors.net_records import ip_type

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.5  # auth log and wtmp/btmp: how often appended bytes are read


class LogonSensor:
    name = "logon"

    def __init__(self, ctx: SensorContext) -> None:
        self._ctx = ctx
        self._audit = AuditAttachment(ctx.audit)
        self._auth_log: AuthLogFollower | None = None
        self._utmp: list[tuple[UtmpFollower, bool]] = []  # (follower, whether its records are failures)
        self._journal: JournalFollower | None = None
        self._thread = SensorThread("vigil-sensor-logon")
        self._health = SensorHealth(HealthState.UNAVAILABLE, "not started")
        self.provider = ""  # the logon source read, once started
        self.provider_why = ""
        self.faults = SensorFaults(log, "logon sensor failed to handle a record")

    # -- choosing the source ------------------------------------------------------------------

    def _auth_log_path(self) -> str | None:
        return next((p for p in self._ctx.config.auth_log_paths if os.path.isfile(p)), None)

    def _unusable(self, source: str) -> str | None:
        """Why ``source`` cannot be read here, or None; opens nothing that stays open."""
        config = self._ctx.config
        if source == "audit":
            if not config.use_audit:
                return "disabled by configuration"
            try:
                open_multicast(rcvbuf=1 << 16).close()
            except SensorUnavailable as e:
                return str(e)
            return None
        if source == "journald":
            return journald_unusable()
        if source == "auth_log":
            return None if self._auth_log_path() else f"no file at {', '.join(config.auth_log_paths)}"
        return None if config.wtmp_path.is_file() else f"no file at {config.wtmp_path}"

    def _detail(self, source: str) -> str:
        config = self._ctx.config
        if source == "audit":
            return "PAM records from the audit feed"
        if source == "journald":
            return "journal entries of facilities auth and authpriv, through journalctl"
        if source == "auth_log":
            return f"following {self._auth_log_path()}"
        if config.btmp_path.is_file():
            return f"sessions from {config.wtmp_path}, failed logins from {config.btmp_path}"
        return f"sessions from {config.wtmp_path}; no {config.btmp_path}, so failed logins are not seen"

    def _open(self, source: str) -> None:
        """Start reading ``source``; raises SensorUnavailable or OSError when it cannot be."""
        config = self._ctx.config
        if source == "audit":
            # User-space messages only; syscall records are not this sensor's.
            user_types = frozenset(range(AUDIT_USER_FIRST, AUDIT_USER_LAST + 1))
            key = rule_key_for(os.getpid(), "logon")
            # PAM records flow whenever audit is on; the rule keeps audit on while this agent runs.
            self._audit.attach(Subscription(self.name, self, record_types=user_types),
                               AuditRuleSession(key, [build_user_message_rule(key)]))
            if not self._audit.attached:
                raise SensorUnavailable("the audit feed did not attach")
            return  # the shared audit feed's thread calls on_audit
        if source == "journald":
            self._journal = JournalFollower(journalctl_command())
            self._thread.start(self._journal_loop)
        elif source == "auth_log":
            path = self._auth_log_path()
            if path is None:
                raise FileNotFoundError(f"no file at {', '.join(config.auth_log_paths)}")
            self._auth_log = AuthLogFollower(Path(path))
            self._thread.start(lambda: self._poll_loop(self._read_auth_log))
        else:
            self._utmp = [(UtmpFollower(config.wtmp_path), False)]
            if config.btmp_path.is_file():
                self._utmp.append((UtmpFollower(config.btmp_path), True))
            self._thread.start(lambda: self._poll_loop(self._read_utmp))

    def _reached(self, source: str, skipped: Sequence[str]) -> SensorHealth:
        order = self._ctx.config.logon_sources
        later = order[order.index(source) + 1:]
        parts = [f"source {source}: {self._detail(source)}"]
        if skipped:
            parts.append(f"not usable: {'; '.join(skipped)}")
        if later:
            parts.append(f"not read: {', '.join(later)} (they would report the same logons again)")
        return SensorHealth(HealthState.ACTIVE if source == "audit" else HealthState.DEGRADED, "; ".join(parts))

    def probe(self) -> SensorHealth:
        skipped: list[str] = []
        for source in self._ctx.config.logon_sources:
            why_not = self._unusable(source)
            if why_not is None:
                return self._reached(source, skipped)
            skipped.append(f"{source} ({why_not})")
        return SensorHealth(HealthState.UNAVAILABLE, f"no logon source: {'; '.join(skipped)}")

    def start(self) -> SensorHealth:
        skipped: list[str] = []
        for source in self._ctx.config.logon_sources:
            # Audit is probed by attaching: a separate probe would only open the socket twice.
            why_not = None if source == "audit" and self._ctx.config.use_audit else self._unusable(source)
            if why_not is None:
                try:
                    self._open(source)
                except (SensorUnavailable, OSError) as e:
                    why_not = str(e) or type(e).__name__
            if why_not is None:
                self.provider = source
                self.provider_why = "; ".join(["the first usable of logon_sources",
                                               *([f"not usable: {'; '.join(skipped)}"] if skipped else [])])
                self._health = self._reached(source, skipped)
                return self._health
            skipped.append(f"{source} ({why_not})")
        self._health = SensorHealth(HealthState.UNAVAILABLE, f"no logon source: {'; '.join(skipped)}")
        self.provider_why = self._health.reason
        return self._health

    def stop(self) -> None:
        self._thread.stopping.set()
        if self._journal is not None:
            self._journal.terminate()  # ends the journal loop's blocking read
        self._thread.stop()
        self._audit.detach()
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if self._auth_log is not None:
            self._auth_log.close()
            self._auth_log = None
        for follower, _ in self._utmp:
            follower.close()
        self._utmp = []

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

    # -- file and journal providers (on the sensor's own thread) -------------------------------

    def _read_auth_log(self) -> list[Logon]:
        assert self._auth_log is not None
        now = self._ctx.clock.now()
        return [logon for line in self._auth_log.lines() if (logon := from_auth_log(line, now)) is not None]

    def _read_utmp(self) -> list[Logon]:
        return [logon for follower, failed in self._utmp for record in follower.records()
                if (logon := from_utmp(record, failed)) is not None]

    def _poll_loop(self, read: Callable[[], list[Logon]]) -> None:
        while not self._thread.stopping.wait(_POLL_SECONDS):
            try:
                rows = [self._row(logon) for logon in read()]
            except Exception:  # keep the sensor alive; counted and shown in health
                self.faults.failed()
                continue
            if rows:
                self._ctx.sink.append(rows)

    def _journal_loop(self) -> None:
        journal = self._journal
        assert journal is not None
        for line in journal.lines():
            try:
                entry = json.loads(line)
                logon = from_journal(entry) if isinstance(entry, dict) else None
                if logon is not None:
                    self._ctx.sink.append([self._row(logon)])
            except Exception:  # keep the sensor alive; counted and shown in health
                self.faults.failed()
        if not self._thread.stopping.is_set():
            self._health = SensorHealth(HealthState.UNAVAILABLE, f"source journald: {journal.exit_reason()}")

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
