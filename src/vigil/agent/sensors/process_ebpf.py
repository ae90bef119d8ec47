"""The process sensor's eBPF provider: tp_btf exec/fork/exit records from process.bpf.o, fed to the tracker."""

from __future__ import annotations

import time
from pathlib import Path

from vigil.agent.sensors.base import Row
from vigil.agent.sensors.bpf_events import HEADER, BadRecord, Kind, decode
from vigil.agent.sensors.libbpf import BpfObject, RingBuffer
from vigil.agent.sensors.proc_connector import ExitEvent, ForkEvent
from vigil.agent.sensors.process_tracker import ProcessTracker
from vigil.agent.sensors.procfs import ProcessInfo

OBJECT_NAME = "process.bpf.o"
# Where `make bpf` puts the object it compiles (never committed: it is built against this kernel's BTF).
DEFAULT_OBJECT = Path(__file__).resolve().parent / "bpf" / OBJECT_NAME

_FORK, _EXIT = Kind.FORK.value, Kind.EXIT.value


def boottime_offset() -> float:
    """Epoch seconds at CLOCK_BOOTTIME zero; taken afresh per batch, since NTP moves the wall clock."""
    return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


class BpfProcessSource:
    """process.bpf.o loaded, its three programs attached and its ring buffer open."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or DEFAULT_OBJECT
        self._obj = BpfObject(self.path)
        try:
            self.ring: RingBuffer = self._obj.ring_buffer("events")
        except BaseException:
            self._obj.close()
            raise

    @property
    def programs(self) -> list[str]:
        return self._obj.programs

    def dropped(self) -> int:
        """Records the kernel could not put in the ring buffer (it was full) since loading."""
        return self._obj.read_u64("dropped")

    def close(self) -> None:
        self.ring.close()
        self._obj.close()


def feed(tracker: ProcessTracker, records: list[bytes], now: float) -> tuple[list[Row], list[BadRecord]]:
    """Decode a batch of records in order and turn them into rows through the tracker.

    Fork and exit records are bare headers and are unpacked here (no event object per record, as
    they are two of every three records); execs go through the full decoder. A malformed record is
    returned, not raised, so the rest of the batch still counts."""
    rows: list[Row] = []
    bad: list[BadRecord] = []
    offset = boottime_offset()
    size, unpack = HEADER.size, HEADER.unpack_from
    users, hashes = tracker.users, tracker.hashes
    for rec in records:
        if len(rec) == size:
            fields = unpack(rec)
            kind = fields[2]
            if kind == _FORK:
                pid, ppid = fields[3], fields[5]
                tracker.on_fork(ForkEvent(fields[0], ppid, ppid, pid, pid))
                continue
            if kind == _EXIT:
                rows += tracker.on_exit(ExitEvent(fields[0], fields[3], fields[3], fields[9], 0), now)
                continue
        try:
            ev = decode(rec)
            if ev.kind is not Kind.EXEC:
                raise BadRecord(f"{ev.kind.name.lower()} record of {len(rec)} bytes, expected {size}")
        except BadRecord as e:
            bad.append(e)
            continue
        info = ProcessInfo(ev.pid, ev.ppid, ev.exe, ev.command_line, ev.uid, users.name(ev.uid), ev.cwd,
                           offset + ev.start_ns / 1e9, hashes.sha256(ev.exe) if ev.exe else "")
        row = tracker.on_described_exec(info, offset + ev.timestamp_ns / 1e9, now)
        if ev.argv_truncated:
            row["AdditionalFields"]["CommandLineTruncated"] = True
        rows.append(row)
    return rows, bad
