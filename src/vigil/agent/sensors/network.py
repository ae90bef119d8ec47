"""The network sensor: audit connect/accept with the process, or socket-table diffs → DeviceNetworkEvents."""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Hashable

from vigil.agent.budget import Gate
from vigil.agent.clock import iso
from vigil.agent.errors import SensorUnavailable
from vigil.agent.sensors.audit_netlink import (
    AuditRuleSession,
    build_network_rules,
    open_multicast,
    rule_key_for,
    split_messages,
)
from vigil.agent.sensors.base import HealthState, Row, SensorContext, SensorHealth
from vigil.agent.sensors.net_records import Endpoint, NetAssembler, NetRecord, ip_type
from vigil.agent.sensors.sockets import TCP_ESTABLISHED, TCP_LISTEN, SocketEntry, owners, read_tables, socket_inode

log = logging.getLogger(__name__)

# One socket-table read serves all the events of one wake-up, and at most 20 reads a second: a
# table of thousands of TIME_WAIT entries costs milliseconds to parse.
_TABLE_REFRESH_SECONDS = 0.05
_MAX_DATAGRAMS_PER_WAKE = 2048


def _key(row: Row) -> Hashable:
    """Rows over the rate are summarised per action, process and remote end."""
    return row["ActionType"], row.get("InitiatingProcessId"), row.get("RemoteIP"), row.get("RemotePort")


class NetworkSensor:
    name = "network"

    def __init__(self, ctx: SensorContext) -> None:
        self._ctx = ctx
        self._audit: socket.socket | None = None
        self._rules: AuditRuleSession | None = None
        self._assembler: NetAssembler | None = None
        self._gate: Gate | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._health = SensorHealth(HealthState.UNAVAILABLE, "not started")
        self._table: dict[int, SocketEntry] = {}
        self._by_remote: dict[Endpoint, list[SocketEntry]] = {}
        self._table_at = 0.0
        self.provider = ""
        self.overflows = 0
        self.failures = 0

    # -- lifecycle ----------------------------------------------------------------------------

    def probe(self) -> SensorHealth:
        if not self._ctx.config.use_audit:
            return SensorHealth(HealthState.DEGRADED, "audit disabled by configuration: socket-table polling")
        try:
            open_multicast(rcvbuf=1 << 16).close()
        except SensorUnavailable as e:
            return SensorHealth(HealthState.DEGRADED, f"audit: {e}; socket-table polling")
        return SensorHealth.active()

    def start(self) -> SensorHealth:
        self._gate = self._ctx.budget.gate(self.name)
        reason = "audit disabled by configuration"
        if self._ctx.config.use_audit:
            try:
                self._audit = open_multicast()
                key = rule_key_for(os.getpid(), "net")
                self._rules = AuditRuleSession(key, build_network_rules(key, os.getpid()))
                self._rules.open()
                self._assembler = NetAssembler()
            except (SensorUnavailable, OSError) as e:
                self._close_audit()
                reason = f"audit unavailable ({e})"
        if self._audit is not None:
            self.provider = "audit"
            self._health = SensorHealth.active()
            target = self._audit_loop
        else:
            self.provider = "socket_table"
            seconds = self._ctx.config.network_poll_seconds
            self._health = SensorHealth(
                HealthState.DEGRADED,
                f"{reason}: polling socket tables every {seconds:g} s; connections shorter than that are missed",
            )
            target = self._poll_loop
        self._thread = threading.Thread(target=target, name="vigil-sensor-network", daemon=True)
        self._thread.start()
        return self._health

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._close_audit()

    def health(self) -> SensorHealth:
        if self._health.state is HealthState.ACTIVE and (self.overflows or self.failures):
            return SensorHealth(HealthState.DEGRADED,
                                f"{self.overflows} receive-buffer overflows, {self.failures} processing failures")
        return self._health

    def _close_audit(self) -> None:
        if self._rules is not None:
            try:
                self._rules.close()
            except OSError as e:
                log.error("could not remove the audit rules %s: %s", self._rules.key, e)
            self._rules = None
        if self._audit is not None:
            self._audit.close()
            self._audit = None

    def _failed(self) -> None:
        self.failures += 1
        if self.failures == 1 or self.failures % 1000 == 0:
            log.exception("network sensor failed to handle an event (%d so far)", self.failures)

    def _append(self, rows: list[Row]) -> None:
        assert self._gate is not None
        out = self._gate.filter(rows, _key) if rows else []
        out += self._gate.flush()
        if out:
            self._ctx.sink.append(out)

    # -- audit provider -----------------------------------------------------------------------

    def _audit_loop(self) -> None:
        assert self._audit is not None and self._assembler is not None and self._gate is not None
        sock, assembler = self._audit, self._assembler
        sock.setblocking(False)
        while not self._stop.is_set():
            ready, _, _ = select.select([sock], [], [], 0.2)
            try:
                records: list[NetRecord] = []
                now = time.monotonic()
                if ready:
                    for data in self._drain(sock):
                        for mtype, payload in split_messages(data):
                            records += assembler.feed(mtype, payload, now)
                records += assembler.expire(time.time())
                if records:
                    self._refresh_table()
                self._append([self._audit_row(r) for r in records])
            except Exception:  # keep the sensor alive; the failure is counted and shown in health
                self._failed()
            self._ctx.budget.pace()
        if self._gate is not None:
            self._ctx.sink.append(self._gate.flush(force=True))

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
                self.overflows += 1
                assert self._gate is not None
                self._gate.overflowed()
                log.warning("network: kernel dropped audit records (receive buffer overflow; counted)")
        return out

    def _local_of(self, rec: NetRecord) -> SocketEntry | None:
        """The socket's table entry: by the inode of its fd while the process lives, else by the
        remote end when only one socket has it (a closed socket lingers in TIME_WAIT, inode 0),
        else, for an accept, the listening socket (its local end is the connection's)."""
        inode = socket_inode(rec.pid, rec.fd)
        listen_inode = socket_inode(rec.pid, rec.listen_fd) if rec.listen_fd >= 0 else None
        return self._lookup(inode, rec.remote, listen_inode)

    def _refresh_table(self) -> None:
        now = time.monotonic()
        if now - self._table_at < _TABLE_REFRESH_SECONDS:
            return
        entries = read_tables()
        self._table = {e.inode: e for e in entries if e.inode}
        self._by_remote = {}
        for e in entries:
            self._by_remote.setdefault(e.remote, []).append(e)
        self._table_at = now

    def _lookup(self, inode: int | None, remote: Endpoint, listen_inode: int | None) -> SocketEntry | None:
        if inode is not None and inode in self._table:
            return self._table[inode]
        candidates = self._by_remote.get(remote, [])
        if len(candidates) == 1:
            return candidates[0]
        return self._table.get(listen_inode) if listen_inode is not None else None

    def _audit_row(self, rec: NetRecord) -> Row:
        entry = self._local_of(rec)
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
        while not self._stop.wait(self._ctx.config.network_poll_seconds):
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
                self._failed()
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
