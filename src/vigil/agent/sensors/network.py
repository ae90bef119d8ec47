"""The network sensor: eBPF TCP state changes and UDP connects, else audit connect/accept with the process, else
socket-table diffs → DeviceNetworkEvents."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Hashable, Sequence

from vigil.agent.budget import Gate
from vigil.agent.clock import iso
from vigil.agent.errors import SensorUnavailable
from vigil.agent.sensors.audit_events import SyscallEvent
from vigil.agent.sensors.audit_feed import AuditAttachment, Subscription
from vigil.agent.sensors.audit_netlink import AuditRuleSession, build_network_rules, open_multicast, rule_key_for
from vigil.agent.sensors.base import HealthState, Row, SensorContext, SensorFaults, SensorHealth, SensorThread
from vigil.agent.sensors.libbpf import describe_object
from vigil.agent.sensors.net_records import NET_INTEREST, Endpoint, NetRecord, build_net, ip_type
from vigil.agent.sensors.network_ebpf import BpfNetworkSource, EbpfNetworkProvider, load_source, source_health
from vigil.agent.sensors.sockets import (
    TCP_ESTABLISHED,
    TCP_LISTEN,
    SocketEntry,
    SocketIndex,
    owners,
    read_tables,
    socket_inode,
)

log = logging.getLogger(__name__)

_DUMP_SECONDS = 0.05



def _key(row: Row) -> Hashable:
    """Rows over the rate are summarised per action, process and remote end."""
    return row["ActionType"], row.get("InitiatingProcessId"), row.get("RemoteIP"), row.get("RemotePort")


class NetworkSensor:
    name = "network"

    def __init__(self, ctx: SensorContext) -> None:
        self._ctx = ctx
        self._audit = AuditAttachment(ctx.audit)
        self._gate: Gate | None = None
        self._thread = SensorThread("vigil-sensor-network")
        self._health = SensorHealth(HealthState.UNAVAILABLE, "not started")
        self._sockets = SocketIndex()
        self._dumped_at = -_DUMP_SECONDS  # when the socket table was last dumped (the feed's clock)
        self._waiting: list[tuple[NetRecord, int | None, int | None]] = []  # records that need a fresh dump
        self._ebpf: EbpfNetworkProvider | None = None
        self.provider = ""  # ebpf, audit or socket_table once started
        self.provider_why = ""  # why that one, not another
        self.faults = SensorFaults(log, "network sensor failed to handle an event")

    # -- lifecycle ----------------------------------------------------------------------------

    def probe(self) -> SensorHealth:
        ebpf = load_source(self._ctx.config)
        if isinstance(ebpf, BpfNetworkSource):
            health = source_health(ebpf)
            ebpf.close()
            return health
        if self._ctx.config.network_provider == "ebpf":
            return SensorHealth(HealthState.UNAVAILABLE, ebpf)
        if not self._ctx.config.use_audit:
            return SensorHealth(HealthState.DEGRADED, "audit disabled by configuration: socket-table polling")
        try:
            open_multicast(rcvbuf=1 << 16).close()
        except SensorUnavailable as e:
            return SensorHealth(HealthState.DEGRADED, f"audit: {e}; socket-table polling")
        return SensorHealth.active()

    def start(self) -> SensorHealth:
        self._gate = self._ctx.budget.gate(self.name)
        ebpf = load_source(self._ctx.config)
        if isinstance(ebpf, BpfNetworkSource):
            self._ebpf = EbpfNetworkProvider(ebpf, self._ctx.processes, self._append, self.faults,
                                             self._gate.overflowed, self._ctx.budget.pace)
            self._ebpf.start()
            self.provider = "ebpf"
            self.provider_why = describe_object(ebpf.path)
            self._health = source_health(ebpf)
            return self._health
        if self._ctx.config.network_provider == "ebpf":
            self._health = SensorHealth(HealthState.UNAVAILABLE, ebpf)
            self.provider_why = ebpf
            return self._health
        reason = f"{ebpf}; audit disabled by configuration"
        if self._ctx.config.use_audit:
            try:
                key = rule_key_for(os.getpid(), "net")
                self._audit.attach(Subscription(self.name, self, NET_INTEREST),
                                   AuditRuleSession(key, build_network_rules(key, os.getpid())))
            except (SensorUnavailable, OSError) as e:
                reason = f"{ebpf}; audit unavailable ({e})"
        if self._audit.attached:
            self.provider = "audit"
            self.provider_why = ebpf
            self._health = SensorHealth(HealthState.ACTIVE, f"provider audit; {ebpf}")
            return self._health  # the shared audit feed's thread calls on_audit
        self.provider = "socket_table"
        self.provider_why = reason
        seconds = self._ctx.config.network_poll_seconds
        self._health = SensorHealth(
            HealthState.DEGRADED,
            f"{reason}: polling socket tables every {seconds:g} s; connections shorter than that are missed",
        )
        self._thread.start(self._poll_loop)
        return self._health

    def stop(self) -> None:
        self._thread.stop()
        if self._ebpf is not None:  # its last records pass the gate, whose summaries then go out
            self._ebpf.stop()
            self._ebpf = None
            if self._gate is not None:
                self._ctx.sink.append(self._gate.flush(force=True))
        audit = self._audit.attached
        self._audit.detach()
        if audit and self._gate is not None:  # the feed calls no more: what waits goes out
            self._resolve([], float("inf"), force=True)
            self._ctx.sink.append(self._gate.flush(force=True))

    def health(self) -> SensorHealth:
        return self.faults.degrade(self._health)

    def _append(self, rows: list[Row]) -> None:
        assert self._gate is not None
        out = self._gate.filter(rows, _key) if rows else []
        out += self._gate.flush()
        if out:
            self._ctx.sink.append(out)

    # -- audit provider (called on the shared audit feed's thread) -----------------------------

    def on_audit(self, events: Sequence[SyscallEvent], records: Sequence[tuple[int, bytes]], now: float) -> None:
        try:
            self._resolve([r for ev in events if (r := build_net(ev)) is not None], now)
        except Exception:  # keep the sensor alive; the failure is counted and shown in health
            self.faults.failed()
        self._ctx.budget.pace()

    def on_tick(self, now: float) -> None:
        try:
            self._resolve([], now)  # records waiting for a dump; summaries whose window has passed
        except Exception:  # keep the sensor alive; the failure is counted and shown in health
            self.faults.failed()

    def on_overflow(self) -> None:
        self.faults.overflows += 1
        if self._gate is not None:
            self._gate.overflowed()
        log.warning("network: kernel dropped audit records (receive buffer overflow; counted)")

    def _resolve(self, records: list[NetRecord], now: float, force: bool = False) -> None:
        """Rows for the records whose socket is known. The socket is found by the inode of its fd
        while the process lives, else by the remote end when only one socket has it (a closed
        socket lingers in TIME_WAIT, inode 0), else, for an accept, by the listening socket (its
        local end is the connection's).

        An inode found in the last dump is right whatever its age; anything else needs a dump taken
        after the record arrived, or a newer socket to the same remote end would go unseen. Such
        records wait for the next dump, at most every _DUMP_SECONDS, which holds only the sockets
        with their remote ends (and the listening ones), not a busy host's thousands in TIME_WAIT."""
        rows: list[Row] = []
        for rec in records:
            inode = socket_inode(rec.pid, rec.fd)  # now, while the process may still hold it
            found = self._sockets.by_inode(inode) if inode is not None else None
            if found is not None:
                rows.append(self._audit_row(rec, found))
                continue
            listen_inode = socket_inode(rec.pid, rec.listen_fd) if rec.listen_fd >= 0 else None
            self._waiting.append((rec, inode, listen_inode))
        if self._waiting and (force or now - self._dumped_at >= _DUMP_SECONDS):
            # Only the sockets these records can match: a busy host's TIME_WAIT sockets stay in the kernel.
            self._sockets.refresh({rec.remote for rec, _i, _l in self._waiting},
                                  listening=any(listen is not None for _r, _i, listen in self._waiting))
            self._dumped_at = now
            rows += [self._audit_row(rec, self._lookup(inode, rec.remote, listen))
                     for rec, inode, listen in self._waiting]
            self._waiting.clear()
        self._append(rows)

    def _lookup(self, inode: int | None, remote: Endpoint, listen_inode: int | None) -> SocketEntry | None:
        found = self._sockets.by_inode(inode) if inode is not None else None
        if found is None:
            found = self._sockets.by_remote(remote)
        if found is None and listen_inode is not None:
            found = self._sockets.by_inode(listen_inode)
        return found

    def _audit_row(self, rec: NetRecord, entry: SocketEntry | None) -> Row:
        protocol = entry.protocol if entry else "Tcp" if rec.action == "InboundConnectionAccepted" else None
        row = _row(rec.action, iso(rec.timestamp), rec.remote, entry.local if entry else None, protocol)
        initiating = self._ctx.processes.initiating(rec.pid)
        if "InitiatingProcessFileName" not in initiating:  # gone already: audit still says what it was
            initiating.update(InitiatingProcessFileName=rec.exe.rsplit("/", 1)[-1] or rec.comm,
                              InitiatingProcessFolderPath=rec.exe or None,
                              InitiatingProcessPosixUserId=rec.uid if rec.uid >= 0 else None,
                              InitiatingProcessParentId=rec.ppid if rec.ppid > 0 else None)
        row.update(initiating)
        if rec.errno:
            row["AdditionalFields"] = {"Errno": errno.errorcode.get(rec.errno, str(rec.errno))}
        return row

    # -- socket-table provider ----------------------------------------------------------------

    def _poll_loop(self) -> None:
        seen = {e.inode for e in read_tables() if e.inode}  # what exists at start is not new
        while not self._thread.stopping.wait(self._ctx.config.network_poll_seconds):
            try:
                entries = read_tables()
                listening = {(e.protocol, e.local.port) for e in entries if e.state == TCP_LISTEN}
                fresh = [e for e in entries if e.inode and e.inode not in seen and e.protocol == "Tcp"
                         and e.state == TCP_ESTABLISHED]
                seen = {e.inode for e in entries if e.inode}
                pids = owners({e.inode for e in fresh})
                rows = []
                when = iso(self._ctx.clock.now())
                for e in fresh:
                    inbound = (e.protocol, e.local.port) in listening
                    row = _row("InboundConnectionAccepted" if inbound else "ConnectionSuccess", when,
                               e.remote, e.local, e.protocol)
                    if e.inode in pids:
                        row.update(self._ctx.processes.initiating(pids[e.inode]))
                    row["AdditionalFields"] = {"Source": "socket_table"}
                    rows.append(row)
                self._append(rows)
            except Exception:  # keep the sensor alive; the failure is counted and shown in health
                self.faults.failed()
        if self._gate is not None:
            self._ctx.sink.append(self._gate.flush(force=True))


def _row(action: str, when: str, remote: Endpoint, local: Endpoint | None, protocol: str | None) -> Row:
    row: Row = {
        "table": "DeviceNetworkEvents",
        "Timestamp": when,
        "ActionType": action,
        "RemoteIP": remote.ip,
        "RemotePort": remote.port,
        "RemoteIPType": ip_type(remote.ip),
        "Protocol": protocol,
    }
    if local is not None:
        row.update(LocalIP=local.ip, LocalPort=local.port, LocalIPType=ip_type(local.ip))
    return row
