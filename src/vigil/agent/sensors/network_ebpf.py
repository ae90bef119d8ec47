"""The network sensor's eBPF provider: TCP connects, accepts and listens and UDP connects from network.bpf.o,
attributed in the kernel."""

from __future__ import annotations

import errno
import logging
import os
import select
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vigil.agent.clock import iso
from vigil.agent.config import AgentConfig
from vigil.agent.sensors.base import HealthState, Row, SensorFaults, SensorHealth, SensorThread
from vigil.agent.sensors.libbpf import MOUNTINFO, BpfError, EventSource, describe_object
from vigil.agent.sensors.net_bpf_events import (
    ABANDONED_ACTION,
    ACTIONS,
    KIND_PROTOCOLS,
    RECORD,
    BadRecord,
    NetKind,
    address,
    check,
)
from vigil.agent.sensors.net_records import ip_type
from vigil.agent.sensors.process_ebpf import boottime_offset
from vigil.agent.sensors.process_lookup import ProcessDirectory
from vigil.agent.sensors.sockets import owners

log = logging.getLogger(__name__)

OBJECT_NAME = "network.bpf.o"
# The shipped CO-RE object, where `make bpf` also rebuilds it (relocated against the running kernel's BTF at load).
DEFAULT_OBJECT = Path(__file__).resolve().parent / "bpf" / OBJECT_NAME

# Rows wait for nothing, so this is their only latency; the wake-up's fixed costs (poll, consume,
# drop counter, spool write) are shared by every connection in it.
_WAKE_SECONDS = 0.05
_ADDRESS_CACHE_ENTRIES = 4096  # distinct (family, address) pairs whose text and IP type are remembered
_LISTENER_REFRESH_SECONDS = 1.0  # the socket tables and /proc fds are read at most this often
_LISTENER_FORGET_SECONDS = 30.0  # a port without a listener here is not looked for again before this

_FAILED, _ACCEPTED, _LISTEN = NetKind.FAILED.value, NetKind.ACCEPTED.value, NetKind.LISTEN.value
# The cgroup programs that report UDP connects; without them TCP is still reported.
UDP_PROGRAMS = ("vigil_udp_connect4", "vigil_udp_connect6")


class BpfNetworkSource(EventSource):
    """network.bpf.o loaded, its programs attached and its ring buffer open."""

    def __init__(self, path: Path | None = None, mountinfo: str = MOUNTINFO) -> None:
        super().__init__(path or DEFAULT_OBJECT, optional=UDP_PROGRAMS, mountinfo=mountinfo)

    @property
    def udp_missing(self) -> str:
        """Why UDP connects are not (all) reported, or "" when both cgroup programs are attached."""
        return "; ".join(f"{name}: {why}" for name, why in self.unattached.items())


def source_health(source: BpfNetworkSource) -> SensorHealth:
    """What a loaded source reports; degraded when UDP connects are not reported (the audit provider
    would have), saying why."""
    missing = source.udp_missing
    reason = (f"provider eBPF ({', '.join(source.programs)}): TCP connects, accepts and listens"
              f"{'' if missing else ' and UDP connects'} attributed in the kernel, so the audit connect/accept"
              f" rules are not used; {describe_object(source.path)}")
    if missing:
        return SensorHealth(HealthState.DEGRADED, f"{reason}; UDP connects are NOT reported: {missing}")
    return SensorHealth(HealthState.ACTIVE, reason)


def load_source(config: AgentConfig) -> BpfNetworkSource | str:
    """The loaded eBPF object, or why it is not used (a sentence for the sensor's health)."""
    if config.network_provider == "audit":
        return "eBPF not tried (network_provider = audit)"
    try:
        return BpfNetworkSource(config.network_bpf_object_path)
    except BpfError as e:
        forced = " but network_provider = ebpf" if config.network_provider == "ebpf" else ""
        return f"eBPF unavailable{forced}: {e}"


class ListenerOwners:
    """Who listens on a local TCP port, for listeners older than the program (the kernel saw no
    listen() to remember): the listening sockets of /proc/net/tcp{,6} and their owners' fds.

    A busy host lists tens of thousands of TIME_WAIT sockets there, so only LISTEN lines are
    parsed, the tables are read at most once a second, and a port nobody here listens on (a
    container's, in another network namespace) is not looked for again for a while."""

    def __init__(self, root: str = "/proc/net", refresh_seconds: float = _LISTENER_REFRESH_SECONDS,
                 forget_seconds: float = _LISTENER_FORGET_SECONDS) -> None:
        self._root = root
        self._refresh = refresh_seconds
        self._forget = forget_seconds
        self._by_port: dict[int, int] = {}
        self._missing: dict[int, float] = {}  # port -> when it was last looked for in vain
        self._at = -refresh_seconds

    def pid(self, port: int) -> int:
        """The listener's pid, 0 when none is found."""
        pid = self._by_port.get(port)
        if pid is not None:
            return pid
        now = time.monotonic()
        if now - self._missing.get(port, -self._forget) < self._forget or now - self._at < self._refresh:
            return 0
        self._at = now
        ports = self.listening()
        self._by_port = {ports[inode]: owner for inode, owner in owners(set(ports)).items()}
        pid = self._by_port.get(port)
        if pid is None:
            if len(self._missing) >= _ADDRESS_CACHE_ENTRIES:
                self._missing.clear()
            self._missing[port] = now
        return pid or 0

    def listening(self) -> dict[int, int]:
        """Listening TCP sockets here: inode -> port."""
        found: dict[int, int] = {}
        for name in ("tcp", "tcp6"):
            try:
                with open(f"{self._root}/{name}") as f:
                    lines = f.read().splitlines()[1:]
            except OSError:
                continue  # no IPv6 here
            for line in lines:
                # "sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...", st 0A = TCP_LISTEN
                fields = line.split(None, 10)
                if len(fields) > 9 and fields[3] == "0A":
                    found[int(fields[9])] = int(fields[1].rpartition(":")[2], 16)
        return found


class KernelNetRows:
    """Turns batches of network.bpf.c records into DeviceNetworkEvents rows, with the columns the
    audit path gives them.

    This runs once per connection on the sensor's thread, so there is no event object per record:
    each address's text and IP type are worked out once, each process is described once per batch
    (through the shared directory, as the audit path does), and the boot-time offset is taken once
    per batch (NTP moves the wall clock, so not once for all)."""

    def __init__(self, processes: ProcessDirectory, listeners: Callable[[int], int] | None = None,
                 own_pid: int = 0) -> None:
        self._processes = processes
        self._own_pid = own_pid  # the agent's own connections are not reported (as the audit rules exclude them)
        self._listener = listeners or ListenerOwners().pid
        self._addresses: dict[tuple[int, bytes], tuple[str, str]] = {}

    def _address(self, family: int, raw: bytes) -> tuple[str, str]:
        """(text, IP type) of an address; raises BadRecord for a family that is not IPv4/IPv6."""
        key = (family, raw)
        found = self._addresses.get(key)
        if found is None:
            if len(self._addresses) >= _ADDRESS_CACHE_ENTRIES:
                self._addresses.clear()
            text = address(family, raw)
            found = self._addresses[key] = (text, ip_type(text))
        return found

    def feed(self, records: list[bytes]) -> tuple[list[Row], list[BadRecord]]:
        """Rows for a batch of records, in order; malformed records are returned, not raised, so the
        rest of the batch still counts."""
        rows: list[Row] = []
        bad: list[BadRecord] = []
        offset = boottime_offset()
        size, unpack, actions, protocols, addr = RECORD.size, RECORD.unpack, ACTIONS, KIND_PROTOCOLS, self._address
        described: dict[int, dict[str, Any]] = {}  # pid -> its Initiating* columns, for this batch
        own = self._own_pid or -1
        for rec in records:
            try:
                if len(rec) != size:
                    check(0, 0, 0, len(rec))
                ts, kind, pid, _tid, ppid, uid, err, family, proto, lport, rport, laddr, raddr, comm = unpack(rec)
                action, protocol = actions.get(kind), protocols.get((kind, proto))
                if action is None or protocol is None:
                    check(kind, family, proto, size)  # says which
                local_ip, local_type = addr(family, laddr)
            except BadRecord as e:
                bad.append(e)
                continue
            if pid == own:
                continue
            row: Row = {"table": "DeviceNetworkEvents", "Timestamp": iso(offset + ts / 1e9), "ActionType": action}
            if kind == _FAILED and not err:
                row["ActionType"] = ABANDONED_ACTION  # closed while connecting: no answer to report
            if kind != _LISTEN:
                remote_ip, remote_type = addr(family, raddr)
                row.update(RemoteIP=remote_ip, RemotePort=rport, RemoteIPType=remote_type)
            row["Protocol"] = protocol
            if lport:  # a failed connect has given its port back already
                row.update(LocalIP=local_ip, LocalPort=lport, LocalIPType=local_type)
            if kind == _ACCEPTED and not pid:
                pid = self._listener(lport)
            initiating = described.get(pid)
            if initiating is None:
                initiating = described[pid] = self._initiating(pid, ppid, uid, comm)
            row.update(initiating)
            if err:
                row["AdditionalFields"] = {"Errno": errno.errorcode.get(err, str(err))}
            rows.append(row)
        return rows, bad

    def _initiating(self, pid: int, ppid: int, uid: int, comm: bytes) -> dict[str, Any]:
        initiating = self._processes.initiating(pid)
        if pid and "InitiatingProcessFileName" not in initiating:  # gone already: the kernel said what it was
            initiating.update(InitiatingProcessFileName=comm.split(b"\0", 1)[0].decode("utf-8", "replace") or None,
                              InitiatingProcessPosixUserId=uid,
                              InitiatingProcessParentId=ppid or None)
        return initiating


class EbpfNetworkProvider:
    """Runs KernelNetRows on its own thread over a loaded source; rows go to ``append`` (the
    sensor's budget gate and sink), kernel drops and bad records are counted in ``faults``."""

    def __init__(self, source: BpfNetworkSource, processes: ProcessDirectory, append: Callable[[list[Row]], None],
                 faults: SensorFaults, overflowed: Callable[[int], None], pace: Callable[[], None]) -> None:
        self.source = source
        self._rows = KernelNetRows(processes, own_pid=os.getpid())
        self._append = append
        self._faults = faults
        self._overflowed = overflowed
        self._pace = pace
        self._thread = SensorThread("vigil-sensor-network-ebpf")

    def start(self) -> None:
        self._thread.start(self._loop)

    def stop(self) -> None:
        """Stops the thread, hands on what the kernel still holds and detaches the program."""
        self._thread.stop()
        try:
            self._append(self._feed(self.source.ring.consume()))
        finally:
            self.source.close()

    def _loop(self) -> None:
        ring, stopping = self.source.ring, self._thread.stopping
        watched = [ring.fileno()]
        last = 0.0
        while not stopping.is_set():
            ready, _, _ = select.select(watched, [], [], 0.2)
            if ready and (rest := last + _WAKE_SECONDS - time.monotonic()) > 0:
                stopping.wait(rest)  # let more records gather; one pass serves them all
            rows: list[Row] = []
            try:
                last = time.monotonic()
                rows = self._feed(ring.consume())
                self._count_drops()
            except Exception:  # keep the sensor alive; the failure is counted and shown in health
                self._faults.failed()
            self._append(rows)  # also lets out summaries whose window has passed
            self._pace()

    def _feed(self, records: list[bytes]) -> list[Row]:
        if not records:
            return []
        rows, bad = self._rows.feed(records)
        if bad:
            self._faults.failures += len(bad)
            log.warning("network: %d malformed eBPF records, e.g. %s", len(bad), bad[0])
        return rows

    def _count_drops(self) -> None:
        dropped = self.source.dropped()
        if dropped > self._faults.overflows:
            log.warning("network: the eBPF ring buffer was full; %d records lost so far", dropped)
            self._overflowed(dropped - self._faults.overflows)
            self._faults.overflows = dropped
