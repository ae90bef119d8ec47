"""The process sensor: proc connector for fork/exec/exit, audit multicast for argv, in one thread."""

from __future__ import annotations

import errno
import logging
import select
import socket
import threading

from vigil.agent.errors import SensorUnavailable
from vigil.agent.sensors.audit_netlink import ExecRuleSession, open_multicast, split_messages
from vigil.agent.sensors.audit_records import ExecAssembler
from vigil.agent.sensors.base import HealthState, Row, SensorContext, SensorHealth
from vigil.agent.sensors.proc_connector import (
    ExecEvent,
    ExitEvent,
    ForkEvent,
    ProcConnectorError,
    close_proc_connector,
    open_proc_connector,
    parse,
)
from vigil.agent.sensors.process_tracker import ProcessTracker

log = logging.getLogger(__name__)

_MAX_DATAGRAMS_PER_WAKE = 2048


class ProcessSensor:
    name = "process"

    def __init__(self, ctx: SensorContext) -> None:
        self._ctx = ctx
        self._pc: socket.socket | None = None
        self._audit: socket.socket | None = None
        self._rule: ExecRuleSession | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._health = SensorHealth(HealthState.UNAVAILABLE, "not started")
        self._overflows = 0
        self._failures = 0
        self.tracker: ProcessTracker | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def probe(self) -> SensorHealth:
        reasons = []
        try:
            close_proc_connector(open_proc_connector(rcvbuf=1 << 16))
        except ProcConnectorError as e:
            reasons.append(f"proc connector: {e.strerror}")
        if self._ctx.config.use_audit:
            try:
                open_multicast(rcvbuf=1 << 16).close()
            except SensorUnavailable as e:
                reasons.append(f"audit: {e}")
        return _combine(reasons, len(reasons) >= 2 or (bool(reasons) and not self._ctx.config.use_audit))

    def start(self) -> SensorHealth:
        reasons: list[str] = []
        try:
            self._pc = open_proc_connector()
        except ProcConnectorError as e:
            reasons.append(f"proc connector unavailable ({e.strerror}): no exit events, exec from audit only")
        if self._ctx.config.use_audit:
            try:
                self._audit = open_multicast()  # join first so no record after the rule goes unseen
                self._rule = ExecRuleSession()
                self._rule.open()
            except (SensorUnavailable, OSError) as e:
                self._close_audit()
                reasons.append(f"audit unavailable ({e}): short-lived processes may lack command lines")
        else:
            reasons.append("audit disabled by configuration: short-lived processes may lack command lines")
        if self._pc is None and self._audit is None:
            self._health = SensorHealth(HealthState.UNAVAILABLE, "; ".join(reasons))
            return self._health
        self.tracker = ProcessTracker(
            use_proc=self._pc is not None,
            use_audit=self._audit is not None,
            audit_wait=self._ctx.config.audit_wait_seconds,
            exit_events=self._ctx.config.process_exit_events,
        )
        self._health = _combine(reasons, False)
        self._ctx.processes.attach(self.tracker.info)
        self._thread = threading.Thread(target=self._loop, name="vigil-sensor-process", daemon=True)
        self._thread.start()
        return self._health

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._ctx.processes.attach(None)
        if self._pc is not None:
            close_proc_connector(self._pc)
            self._pc = None
        self._close_audit()

    def health(self) -> SensorHealth:
        if self._health.state is HealthState.ACTIVE and (self._overflows or self._failures):
            return SensorHealth(
                HealthState.DEGRADED,
                f"{self._overflows} receive-buffer overflows, {self._failures} processing failures",
            )
        return self._health

    def _close_audit(self) -> None:
        if self._rule is not None:
            try:
                self._rule.close()
            except OSError as e:
                log.error("could not remove the audit rule %s: %s", self._rule.key, e)
            self._rule = None
        if self._audit is not None:
            self._audit.close()
            self._audit = None

    # -- the loop -----------------------------------------------------------------------------

    def _loop(self) -> None:
        assert self.tracker is not None
        tracker = self.tracker
        assembler = ExecAssembler()
        clock = self._ctx.clock
        socks = [s for s in (self._pc, self._audit) if s is not None]
        for s in socks:
            s.setblocking(False)
        while not self._stop.is_set():
            deadline = tracker.next_deadline()
            timeout = 0.2 if deadline is None else max(0.0, min(0.2, deadline - clock.monotonic()))
            ready, _, _ = select.select(socks, [], [], timeout)
            rows: list[Row] = []
            try:
                now = clock.monotonic()
                if self._pc is not None and self._pc in ready:
                    for data in self._drain(self._pc):
                        self._on_proc(tracker, data, now, rows)
                if self._audit is not None and self._audit in ready:
                    for data in self._drain(self._audit):
                        self._on_audit(tracker, assembler, data, now, rows)
                now = clock.monotonic()
                for rec in assembler.expire(now):
                    rows += tracker.on_audit(rec, now)
                rows += tracker.expire(now)
            except Exception:  # keep the sensor alive; the failure is counted and shown in health
                self._failures += 1
                if self._failures == 1 or self._failures % 1000 == 0:  # a bug must not flood the log
                    log.exception("process sensor failed to handle an event (%d so far)", self._failures)
            if rows:
                self._ctx.sink.append(rows)
        # Stopping: whatever still waits for a partner goes out as it is.
        final = tracker.expire(float("inf"))
        if final:
            self._ctx.sink.append(final)

    def _drain(self, sock: socket.socket) -> list[bytes]:
        out: list[bytes] = []
        for _ in range(_MAX_DATAGRAMS_PER_WAKE):
            try:
                out.append(sock.recv(1 << 16))
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    raise
                self._overflows += 1
                log.warning("%s: kernel dropped events (receive buffer overflow)", self.name)
        return out

    @staticmethod
    def _on_proc(tracker: ProcessTracker, data: bytes, now: float, rows: list[Row]) -> None:
        for ev in parse(data):
            if isinstance(ev, ExecEvent):
                rows += tracker.on_exec(ev, now)
            elif isinstance(ev, ForkEvent):
                tracker.on_fork(ev)
            elif isinstance(ev, ExitEvent):
                rows += tracker.on_exit(ev, now)

    @staticmethod
    def _on_audit(
        tracker: ProcessTracker, assembler: ExecAssembler, data: bytes, now: float, rows: list[Row]
    ) -> None:
        for mtype, payload in split_messages(data):
            for rec in assembler.feed(mtype, payload, now):
                rows += tracker.on_audit(rec, now)


def _combine(reasons: list[str], unavailable: bool) -> SensorHealth:
    if not reasons:
        return SensorHealth.active()
    return SensorHealth(HealthState.UNAVAILABLE if unavailable else HealthState.DEGRADED, "; ".join(reasons))
