"""The process sensor: eBPF (tp_btf exec/fork/exit) where it loads, else the proc connector for fork/exec/exit
joined with execve records from the shared audit feed for argv."""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
from collections import deque
from collections.abc import Sequence

from vigil.agent.errors import SensorUnavailable
from vigil.agent.sensors.audit_events import SyscallEvent
from vigil.agent.sensors.audit_feed import AuditAttachment, Subscription
from vigil.agent.sensors.audit_netlink import ExecRuleSession, drain, open_multicast
from vigil.agent.sensors.audit_records import EXEC_INTEREST, ExecRecord, build_exec
from vigil.agent.sensors.base import HealthState, Row, SensorContext, SensorFaults, SensorHealth, SensorThread
from vigil.agent.sensors.libbpf import BpfError, describe_object
from vigil.agent.sensors.proc_connector import (
    ExecEvent,
    ExitEvent,
    ForkEvent,
    ProcConnectorError,
    close_proc_connector,
    open_proc_connector,
    parse,
)
from vigil.agent.sensors.process_ebpf import BpfProcessSource, KernelRows
from vigil.agent.sensors.process_tracker import ProcessTracker

log = logging.getLogger(__name__)

_MAX_DATAGRAMS_PER_WAKE = 2048
# Wake-ups at least this far apart: events gather in the socket buffer meanwhile, so one pass and
# one spool write serve many of them (the rows wait up to audit_wait_seconds anyway).
_WAKE_SECONDS = 0.01
# The eBPF rows wait for nothing, so their only latency is this; the wake-up's fixed costs (poll,
# ring-buffer consume, drop counter, spool write) are then shared by many more processes.
_BPF_WAKE_SECONDS = 0.05


class ProcessSensor:
    name = "process"

    def __init__(self, ctx: SensorContext) -> None:
        self._ctx = ctx
        self._pc: socket.socket | None = None
        self._bpf: BpfProcessSource | None = None
        self._kernel_rows: KernelRows | None = None
        self._audit_wake = -1  # an eventfd the audit feed's thread signals when records are queued
        self._audit_in: deque[ExecRecord] = deque()
        self._audit = AuditAttachment(ctx.audit)
        self._thread = SensorThread("vigil-sensor-process")
        self._health = SensorHealth(HealthState.UNAVAILABLE, "not started")
        self._faults = SensorFaults(log, "process sensor failed to handle an event")
        self.tracker: ProcessTracker | None = None
        # The provider started (ebpf, proc_connector or audit) and why it, not another, runs; "" until started.
        self.provider = ""
        self.provider_why = ""

    # -- lifecycle ----------------------------------------------------------------------------

    def probe(self) -> SensorHealth:
        ebpf = self._try_ebpf()
        if isinstance(ebpf, BpfProcessSource):
            ebpf.close()
            return SensorHealth(HealthState.ACTIVE, "provider eBPF")
        if self._ctx.config.process_provider == "ebpf":
            return SensorHealth(HealthState.UNAVAILABLE, ebpf)
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

    def _try_ebpf(self) -> BpfProcessSource | str:
        """The loaded eBPF provider, or why there is none."""
        if self._ctx.config.process_provider == "proc_connector":
            return "eBPF not tried (process_provider = proc_connector)"
        try:
            return BpfProcessSource(self._ctx.config.bpf_object_path)
        except BpfError as e:
            forced = " but process_provider = ebpf" if self._ctx.config.process_provider == "ebpf" else ""
            return f"eBPF unavailable{forced}: {e}"

    def start(self) -> SensorHealth:
        ebpf = self._try_ebpf()
        if isinstance(ebpf, BpfProcessSource):
            return self._start_ebpf(ebpf)
        if self._ctx.config.process_provider == "ebpf":
            self._health = SensorHealth(HealthState.UNAVAILABLE, ebpf)
            self.provider_why = ebpf
            return self._health
        reasons: list[str] = []
        try:
            self._pc = open_proc_connector()
        except ProcConnectorError as e:
            reasons.append(f"proc connector unavailable ({e.strerror}): no exit events, exec from audit only")
        if self._ctx.config.use_audit:
            try:
                self._audit_wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
                self._audit.attach(Subscription(self.name, self, EXEC_INTEREST), ExecRuleSession())
            except (SensorUnavailable, OSError) as e:
                self._close_audit()
                reasons.append(f"audit unavailable ({e}): short-lived processes may lack command lines")
        else:
            reasons.append("audit disabled by configuration: short-lived processes may lack command lines")
        if self._pc is None and not self._audit.attached:
            self._health = SensorHealth(HealthState.UNAVAILABLE, "; ".join(reasons))
            self.provider_why = "; ".join([ebpf, *reasons])
            return self._health
        self.tracker = ProcessTracker(
            use_proc=self._pc is not None,
            use_audit=self._audit.attached,
            audit_wait=self._ctx.config.audit_wait_seconds,
            exit_events=self._ctx.config.process_exit_events,
        )
        combined = _combine(reasons, False)
        provider = "provider proc connector" if self._pc is not None else "provider audit"
        provider += " + audit" if self._pc is not None and self._audit.attached else ""
        self.provider = "proc_connector" if self._pc is not None else "audit"
        self.provider_why = ebpf
        self._health = SensorHealth(combined.state, "; ".join(filter(None, [provider, ebpf, combined.reason])))
        self._ctx.processes.attach(self.tracker.info)
        self._thread.start(self._loop)
        return self._health

    def _start_ebpf(self, source: BpfProcessSource) -> SensorHealth:
        self._bpf = source
        self._kernel_rows = KernelRows(exit_events=self._ctx.config.process_exit_events)
        self.tracker = self._kernel_rows.tracker
        self.provider = "ebpf"
        self.provider_why = describe_object(source.path)
        self._health = SensorHealth(
            HealthState.ACTIVE,
            f"provider eBPF ({', '.join(source.programs)}): the kernel describes each process, so the proc"
            f" connector and the audit exec rule are not used; {self.provider_why}",
        )
        self._ctx.processes.attach(self.tracker.info)
        self._thread.start(self._bpf_loop)
        return self._health

    def stop(self) -> None:
        self._thread.stop()
        self._ctx.processes.attach(None)
        if self._bpf is not None:
            self._bpf.close()  # detaches the programs
            self._bpf = None
        if self._pc is not None:
            close_proc_connector(self._pc)
            self._pc = None
        self._close_audit()

    def health(self) -> SensorHealth:
        return self._faults.degrade(self._health)

    def _close_audit(self) -> None:
        self._audit.detach()
        if self._audit_wake >= 0:
            os.close(self._audit_wake)
            self._audit_wake = -1

    # -- the audit feed's side (its thread) ---------------------------------------------------

    def on_audit(self, events: Sequence[SyscallEvent], records: Sequence[tuple[int, bytes]], now: float) -> None:
        try:
            execs = [ex for ev in events if (ex := build_exec(ev)) is not None]
        except Exception:  # keep the feed alive; counted and shown in health
            self._faults.failed()
            return
        if execs:
            self._audit_in.extend(execs)
            os.eventfd_write(self._audit_wake, 1)

    def on_tick(self, now: float) -> None:
        pass  # the sensor's own thread keeps the tracker's timers

    def on_overflow(self) -> None:
        self._faults.overflows += 1

    # -- the loop -----------------------------------------------------------------------------

    def _loop(self) -> None:
        assert self.tracker is not None
        tracker = self.tracker
        clock = self._ctx.clock
        pc, wake = self._pc, self._audit_wake
        if pc is not None:
            pc.setblocking(False)
        watched: list[socket.socket | int] = [pc] if pc is not None else []
        if wake >= 0:
            watched.append(wake)
        last = 0.0
        while not self._thread.stopping.is_set():
            deadline = tracker.next_deadline()
            # Timers are served at the same pace: with hundreds of execs a second, every one of
            # them has its own deadline, and waking for each would cost more than the rows.
            timeout = 0.2 if deadline is None else max(0.0, min(0.2, deadline - clock.monotonic()))
            ready, _, _ = select.select(watched, [], [], max(timeout, last + _WAKE_SECONDS - clock.monotonic()))
            if ready and (rest := last + _WAKE_SECONDS - clock.monotonic()) > 0:
                self._thread.stopping.wait(rest)  # let more events gather; one pass serves them all
            rows: list[Row] = []
            try:
                last = now = clock.monotonic()
                if pc is not None:
                    for data in self._drain(pc):
                        self._on_proc(tracker, data, now, rows)
                rows += self._take_audit(tracker, now)
                rows += tracker.expire(clock.monotonic())
            except Exception:  # keep the sensor alive; the failure is counted and shown in health
                self._faults.failed()
            if rows:
                self._ctx.sink.append(rows)
        # Stopping: whatever still waits for a partner goes out as it is.
        final = self._take_audit(tracker, clock.monotonic()) + tracker.expire(float("inf"))
        if final:
            self._ctx.sink.append(final)

    def _bpf_loop(self) -> None:
        assert self.tracker is not None and self._bpf is not None and self._kernel_rows is not None
        tracker, source, clock, kernel = self.tracker, self._bpf, self._ctx.clock, self._kernel_rows
        ring = source.ring
        watched = [ring.fileno()]
        last = 0.0
        while not self._thread.stopping.is_set():
            ready, _, _ = select.select(watched, [], [], 0.2)
            if ready and (rest := last + _BPF_WAKE_SECONDS - clock.monotonic()) > 0:
                self._thread.stopping.wait(rest)  # let more records gather; one pass serves them all
            rows: list[Row] = []
            try:
                last = now = clock.monotonic()
                rows = self._feed(kernel, ring.consume(), now)
                rows += tracker.expire(now)
                rows += kernel.pipelines.expire(now)
                self._count_drops(source)
            except Exception:  # keep the sensor alive; the failure is counted and shown in health
                self._faults.failed()
            if rows:
                self._ctx.sink.append(rows)
        final = self._feed(kernel, ring.consume(), clock.monotonic()) + tracker.expire(float("inf"))
        final += kernel.pipelines.expire(float("inf"))
        if final:
            self._ctx.sink.append(final)

    def _feed(self, kernel: KernelRows, records: list[bytes], now: float) -> list[Row]:
        rows, bad = kernel.feed(records, now)
        if bad:
            self._faults.failures += len(bad)
            log.warning("%s: %d malformed eBPF records, e.g. %s", self.name, len(bad), bad[0])
        return rows

    def _count_drops(self, source: BpfProcessSource) -> None:
        dropped = source.dropped()
        if dropped > self._faults.overflows:
            log.warning("%s: the eBPF ring buffer was full; %d records lost so far", self.name, dropped)
            self._faults.overflows = dropped

    def _take_audit(self, tracker: ProcessTracker, now: float) -> list[Row]:
        if self._audit_wake < 0:
            return []
        with contextlib.suppress(BlockingIOError):  # not signalled since the last pass
            os.eventfd_read(self._audit_wake)  # reset before taking, so no signal is missed
        rows: list[Row] = []
        queue = self._audit_in
        while queue:
            rows += tracker.on_audit(queue.popleft(), now)
        return rows

    def _drain(self, sock: socket.socket) -> list[bytes]:
        out, overflows = drain(sock, _MAX_DATAGRAMS_PER_WAKE)
        if overflows:
            self._faults.overflows += overflows
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


def _combine(reasons: list[str], unavailable: bool) -> SensorHealth:
    if not reasons:
        return SensorHealth.active()
    return SensorHealth(HealthState.UNAVAILABLE if unavailable else HealthState.DEGRADED, "; ".join(reasons))
