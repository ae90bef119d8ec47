"""Groups audit records by event serial for the syscalls each consumer asked for; pure, no sockets."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from vigil.agent.sensors.audit_parse import AuditParseError, parse_fields, parse_header, serial_of, syscall_of

AUDIT_SYSCALL = 1300
AUDIT_EOE = 1320

SyscallKey = tuple[str, int]  # (arch as the record prints it, e.g. "c000003e"; syscall number)


@dataclass(frozen=True)
class AuditInterest:
    """What one consumer wants: syscall events by (arch, number), with these record types attached."""

    syscalls: frozenset[SyscallKey] = frozenset()
    record_types: frozenset[int] = frozenset()


@dataclass(frozen=True)
class SyscallEvent:
    """One audited syscall: its SYSCALL record's fields (raw values) and the wanted records after it,
    left unparsed so only the consumer that needs one pays for it."""

    serial: int
    timestamp: float
    syscall: dict[str, str]
    records: tuple[tuple[int, bytes], ...] = ()

    def payloads(self, record_type: int) -> list[bytes]:
        return [p for t, p in self.records if t == record_type]


@dataclass
class _Open:
    """An event still collecting records (internal bookkeeping, mutated until EOE)."""

    first_seen: float
    timestamp: float
    syscall: dict[str, str]
    consumers: tuple[str, ...]
    types: frozenset[int]
    records: list[tuple[int, bytes]] = field(default_factory=list)

    def done(self, serial: int) -> SyscallEvent:
        return SyscallEvent(serial, self.timestamp, self.syscall, tuple(self.records))


class EventAssembler:
    """Feed it records as they arrive; it returns completed events for the consumers that want them.

    Only a SYSCALL record of a wanted syscall opens an event; every other record is judged by its
    header alone, so the machine's other audit traffic costs a few byte searches per record.
    An event completes at its EOE record, or after ``max_age`` (EOE is lost when the backlog overflows).
    """

    def __init__(self, interests: Mapping[str, AuditInterest] | None = None, max_age: float = 2.0) -> None:
        self.max_age = max_age
        self._interests: dict[str, AuditInterest] = dict(interests or {})
        self._routes: dict[SyscallKey, tuple[tuple[str, ...], frozenset[int]]] = {}
        self._open: dict[int, _Open] = {}
        self._types: frozenset[int] = frozenset()
        self.malformed = 0
        self._reroute()

    def add(self, name: str, interest: AuditInterest) -> None:
        self._interests[name] = interest
        self._reroute()

    def remove(self, name: str) -> None:
        self._interests.pop(name, None)
        self._reroute()
        for serial in [s for s, o in self._open.items() if name in o.consumers]:
            del self._open[serial]

    def _reroute(self) -> None:
        routes: dict[SyscallKey, tuple[tuple[str, ...], frozenset[int]]] = {}
        for name, interest in self._interests.items():
            for key in interest.syscalls:
                names, types = routes.get(key, ((), frozenset()))
                routes[key] = ((*names, name), types | interest.record_types)
        self._routes = routes
        self._types = frozenset(t for _names, types in routes.values() for t in types)

    def feed(self, record_type: int, payload: bytes, now: float) -> list[tuple[str, SyscallEvent]]:
        if record_type == AUDIT_SYSCALL:
            try:
                seconds, millis, serial, start = parse_header(payload)
            except AuditParseError:
                self.malformed += 1
                return []
            key = syscall_of(payload, start)
            route = self._routes.get(key) if key is not None else None
            if route is None:
                return []  # nobody wants this syscall: its fields are never parsed
            self._open[serial] = _Open(now, seconds + millis / 1000, parse_fields(payload, start), *route)
            return []
        # Records of types nobody wants (PATH, BPRM_FCAPS...) are dropped unread, not even their serial.
        if not self._open or (record_type != AUDIT_EOE and record_type not in self._types):
            return []
        joined = serial_of(payload)
        if joined is None:
            self.malformed += 1
            return []
        event = self._open.get(joined)
        if event is None:
            return []
        if record_type != AUDIT_EOE:
            if record_type in event.types:
                event.records.append((record_type, payload))
            return []
        del self._open[joined]
        done = event.done(joined)
        return [(name, done) for name in event.consumers]

    def expire(self, now: float) -> list[tuple[str, SyscallEvent]]:
        """Events whose EOE never came still count, once their records stop arriving."""
        out: list[tuple[str, SyscallEvent]] = []
        # Opened in arrival order with the same max_age, so the stale ones are at the front.
        for serial, event in list(self._open.items()):
            if now - event.first_seen <= self.max_age:
                break
            del self._open[serial]
            done = event.done(serial)
            out += [(name, done) for name in event.consumers]
        return out

    def __len__(self) -> int:
        return len(self._open)


T = TypeVar("T")


class RecordAssembler(Generic[T]):
    """Records in, one consumer's values out (ExecRecord, NetRecord): its part of the shared
    audit feed, usable on its own."""

    def __init__(self, interest: AuditInterest, build: Callable[[SyscallEvent], T | None], max_age: float) -> None:
        self._events = EventAssembler({"consumer": interest}, max_age)
        self._build = build

    @property
    def malformed(self) -> int:
        return self._events.malformed

    def feed(self, record_type: int, payload: bytes, now: float) -> Iterator[T]:
        yield from self._built(self._events.feed(record_type, payload, now))

    def expire(self, now: float) -> Iterator[T]:
        """Events whose EOE never came (lost when the backlog overflows) still count."""
        yield from self._built(self._events.expire(now))

    def _built(self, events: list[tuple[str, SyscallEvent]]) -> Iterator[T]:
        for _name, event in events:
            if (value := self._build(event)) is not None:
                yield value

    def __len__(self) -> int:
        return len(self._events)


def syscall_keys(arches: Iterable[tuple[str, Iterable[int]]]) -> frozenset[SyscallKey]:
    return frozenset((arch, nr) for arch, numbers in arches for nr in numbers)
