"""The system-log sensor: journald's entries (through journalctl), else the syslog files → DeviceSystemLogEvents.

The rows carry the messages SigmaHQ's Linux `builtin` rules search (sshd, cron, sudo, su, vsftpd, clamav,
guacamole, syslog), one action type per service; they pass the agent's budget like the file and network rows.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Hashable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from vigil.agent.budget import Gate
from vigil.agent.sensors.base import HealthState, Row, SensorContext, SensorFaults, SensorHealth, SensorThread
from vigil.agent.sensors.logon_sources import JOURNAL_SOCKET, AuthLogFollower, JournalFollower, journald_unusable
from vigil.agent.sensors.system_log_records import SystemLogEntry, from_journal, from_syslog_line, to_row

log = logging.getLogger(__name__)

# Where syslog daemons write (Debian's rsyslog: syslog, auth.log; Red Hat's: messages, secure, cron). Each file
# holds other facilities than the rest, so all that exist are followed; the value is the facility a file's
# name tells, for lines that carry none.
SYSLOG_FILES: tuple[tuple[str, str | None], ...] = (
    ("/var/log/syslog", None), ("/var/log/messages", None), ("/var/log/auth.log", "auth"),
    ("/var/log/secure", "authpriv"), ("/var/log/cron", "cron"), ("/var/log/vsftpd.log", "ftp"))
_POLL_SECONDS = 0.5


def journal_command(journalctl: str = "journalctl") -> list[str]:
    """journalctl following new entries, debug messages left out (priority 0..6), one JSON object per line."""
    return [journalctl, "--follow", "--lines=0", "--output=json", "--no-pager", "--quiet", "--priority=0..6"]


def _key(row: Row) -> Hashable:
    """Rows over the budget fold per program and message: a flood of one line becomes one row and a count."""
    return (row["ActionType"], row["ProcessName"], row["SyslogMessage"])


class SystemLogSensor:
    name = "system_log"

    def __init__(self, ctx: SensorContext, files: Sequence[tuple[str, str | None]] = SYSLOG_FILES,
                 journal: Sequence[str] | None = None, journal_socket: Path | None = JOURNAL_SOCKET) -> None:
        """`journal`: the journalctl command; `journal_socket`: journald's socket, whose presence says it runs
        (None: do not use the journal)."""
        self._ctx = ctx
        self._socket = journal_socket
        self._files_wanted = files
        self._journal_command = list(journal) if journal is not None else journal_command()
        self._journal: JournalFollower | None = None
        self._files: list[tuple[AuthLogFollower, str | None]] = []
        self._thread = SensorThread("vigil-sensor-system-log")
        self._flusher = SensorThread("vigil-sensor-system-log-flush")
        self._gate: Gate | None = None
        self._health = SensorHealth(HealthState.UNAVAILABLE, "not started")
        self.provider = ""  # journald or files, once started
        self.provider_why = ""
        self.faults = SensorFaults(log, "system-log sensor failed to handle an entry")
        self._own_pid = str(os.getpid())

    def _existing_files(self) -> list[tuple[str, str | None]]:
        return [(p, f) for p, f in self._files_wanted if os.path.isfile(p)]

    def _journald_unusable(self) -> str | None:
        return "not used (configured)" if self._socket is None else journald_unusable(self._socket)

    def probe(self) -> SensorHealth:
        why_not = self._journald_unusable()
        if why_not is None:
            return SensorHealth(HealthState.ACTIVE, "source journald")
        if self._existing_files():
            return SensorHealth(HealthState.ACTIVE, f"source files; journald not usable: {why_not}")
        return SensorHealth(HealthState.UNAVAILABLE, f"no system log: {why_not}; no file at "
                            f"{', '.join(p for p, _ in self._files_wanted)}")

    def start(self) -> SensorHealth:
        self._gate = self._ctx.budget.gate(self.name)
        why_not = self._journald_unusable()
        if why_not is None:
            try:
                self._journal = JournalFollower(self._journal_command)
            except OSError as e:
                why_not = f"cannot start journalctl: {e}"
            else:
                self.provider = "journald"
                self.provider_why = "journald's socket is present"
                self._thread.start(self._journal_loop)
                self._flusher.start(self._flush_loop)
                self._health = SensorHealth(HealthState.ACTIVE, "source journald: every entry of priority info "
                                            "or above, through journalctl")
                return self._health
        for path, facility in self._existing_files():
            try:
                self._files.append((AuthLogFollower(Path(path)), facility))
            except OSError as e:
                log.warning("system-log sensor: cannot follow %s: %s", path, e)
        if not self._files:
            self._health = SensorHealth(HealthState.UNAVAILABLE, f"no system log: journald not usable: {why_not}; "
                                        f"no readable file at {', '.join(p for p, _ in self._files_wanted)}")
            self.provider_why = self._health.reason
            return self._health
        self.provider = "files"
        self.provider_why = f"journald not usable: {why_not}"
        self._thread.start(self._poll_loop)
        names = ", ".join(str(f.path) for f, _ in self._files)
        self._health = SensorHealth(HealthState.ACTIVE, f"source files: following {names}; journald not usable: "
                                    f"{why_not}")
        return self._health

    def stop(self) -> None:
        self._thread.stopping.set()
        if self._journal is not None:
            self._journal.terminate()  # ends the journal loop's blocking read
        self._thread.stop()
        self._flusher.stop()
        if self._gate is not None:
            self._emit(self._gate.flush(force=True))
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        for follower, _ in self._files:
            follower.close()
        self._files = []

    def health(self) -> SensorHealth:
        return self.faults.degrade(self._health)

    # -- reading -------------------------------------------------------------------------------

    def _emit(self, rows: list[Row]) -> None:
        if rows:
            self._ctx.sink.append(rows)

    def _pass(self, entries: list[SystemLogEntry]) -> None:
        assert self._gate is not None
        self._emit(self._gate.filter([to_row(e) for e in entries], _key))

    def _journal_loop(self) -> None:
        journal = self._journal
        assert journal is not None
        for line in journal.lines():
            try:
                entry = json.loads(line)
                if not isinstance(entry, dict) or self._skipped(entry):
                    continue
                found = from_journal(entry)
                if found is not None:
                    self._pass([found])
            except Exception:  # keep the sensor alive; counted and shown in health
                self.faults.failed()
        if not self._thread.stopping.is_set():
            self._health = SensorHealth(HealthState.UNAVAILABLE, f"source journald: {journal.exit_reason()}")

    def _skipped(self, entry: dict[str, object]) -> bool:
        # Kernel audit records reach the journal too: the audit sensors read them from the kernel, and the agent's
        # own exec rules would make every exec a second row here. The agent's own messages are not news either.
        return entry.get("_TRANSPORT") == "audit" or entry.get("_PID") == self._own_pid

    def _flush_loop(self) -> None:
        assert self._gate is not None
        while not self._flusher.stopping.wait(self._ctx.budget.limits.aggregate_seconds / 2):
            self._emit(self._gate.flush())

    def _poll_loop(self) -> None:
        assert self._gate is not None
        while not self._thread.stopping.wait(_POLL_SECONDS):
            try:
                now = datetime.now(UTC)
                entries = [entry for follower, facility in self._files for line in follower.lines()
                           if (entry := from_syslog_line(line, now, str(follower.path), facility)) is not None]
                self._pass(entries)
                self._emit(self._gate.flush())
            except Exception:  # keep the sensor alive; counted and shown in health
                self.faults.failed()
