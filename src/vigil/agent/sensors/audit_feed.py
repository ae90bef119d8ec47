"""One audit multicast reader per agent: each record is parsed once and dispatched to the sensors that want it."""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from vigil.agent.errors import SensorUnavailable
from vigil.agent.sensors.audit_events import AuditInterest, EventAssembler, SyscallEvent
from vigil.agent.sensors.audit_netlink import AuditRuleSession, drain, open_multicast, split_messages

log = logging.getLogger(__name__)

_MAX_DATAGRAMS_PER_WAKE = 4096
_TICK_SECONDS = 0.05  # subscribers' timers (records waiting for a socket dump) are this fine


class AuditSubscriber(Protocol):
    """A sensor's side of the feed; called on the feed's thread, never concurrently."""

    def on_audit(self, events: Sequence[SyscallEvent], records: Sequence[tuple[int, bytes]], now: float) -> None:
        """Completed syscall events it asked for, and standalone records of the types it asked for."""
        ...

    def on_tick(self, now: float) -> None:
        """Called about every 0.05 s, events or not (timers, summaries)."""
        ...

    def on_overflow(self) -> None:
        """The kernel dropped records for the shared socket (ENOBUFS): some may have been this sensor's."""
        ...


@dataclass(frozen=True)
class Subscription:
    name: str
    subscriber: AuditSubscriber
    interest: AuditInterest = field(default_factory=AuditInterest)
    record_types: frozenset[int] = frozenset()  # standalone records (e.g. PAM's USER_*), delivered as they come


@dataclass
class _Batch:
    """What one wake-up collected for one subscriber (internal, rebuilt every wake-up)."""

    events: list[SyscallEvent] = field(default_factory=list)
    records: list[tuple[int, bytes]] = field(default_factory=list)


class AuditFeed:
    """Shared by the sensors of one agent. The first subscriber opens the socket and starts the
    thread; the last one out stops it. Each sensor still installs and removes its own keyed rules.

    Wake-ups are at least ``wake_seconds`` apart: records gather in the socket buffer meanwhile, so
    one pass (and one call per subscriber) serves many of them.
    """

    def __init__(
        self,
        *,
        wake_seconds: float = 0.01,
        max_age: float = 2.0,
        open_socket: Callable[[], socket.socket] = open_multicast,
    ) -> None:
        self._wake = wake_seconds
        self._open_socket = open_socket
        self._assembler = EventAssembler(max_age=max_age)
        self._subs: dict[str, Subscription] = {}
        self._by_type: dict[int, tuple[str, ...]] = {}
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.overflows = 0
        self.failures = 0

    @property
    def malformed(self) -> int:
        return self._assembler.malformed

    def subscribe(self, subscription: Subscription) -> None:
        """Join the feed; raises SensorUnavailable when the multicast group cannot be joined."""
        with self._lock:
            if subscription.name in self._subs:
                raise ValueError(f"{subscription.name!r} is subscribed to the audit feed already")
            if self._sock is None:
                self._sock = self._open_socket()  # joined before any rule goes in: no record unseen
                self._sock.setblocking(False)
                self._stop = threading.Event()
                self._thread = threading.Thread(target=self._loop, args=(self._sock, self._stop),
                                                name="vigil-audit-feed", daemon=True)
                self._thread.start()
            self._subs[subscription.name] = subscription
            self._assembler.add(subscription.name, subscription.interest)
            self._reindex()

    def unsubscribe(self, name: str) -> None:
        """Leave the feed; no call reaches the subscriber after this returns."""
        with self._lock:
            if self._subs.pop(name, None) is None:
                return
            self._assembler.remove(name)
            self._reindex()
            if self._subs:
                return
            thread, sock, self._thread, self._sock = self._thread, self._sock, None, None
            self._stop.set()
        if thread is not None:
            thread.join(timeout=5)
        if sock is not None:
            sock.close()

    def _reindex(self) -> None:
        by_type: dict[int, tuple[str, ...]] = {}
        for sub in self._subs.values():
            for t in sub.record_types:
                by_type[t] = (*by_type.get(t, ()), sub.name)
        self._by_type = by_type

    # -- the thread ---------------------------------------------------------------------------

    def _loop(self, sock: socket.socket, stop: threading.Event) -> None:
        last = 0.0
        next_tick = 0.0
        while not stop.is_set():
            ready, _, _ = select.select([sock], [], [], _TICK_SECONDS)
            if ready and (rest := last + self._wake - time.monotonic()) > 0:
                stop.wait(rest)  # let more records gather; one pass serves them all
            last = now = time.monotonic()
            overflows = 0
            try:
                datagrams, overflows = drain(sock, _MAX_DATAGRAMS_PER_WAKE) if ready else ([], 0)
            except OSError as e:  # the socket itself failed: nothing more will come
                log.error("audit feed: reading the multicast socket failed: %s", e)
                return
            if overflows:
                self.overflows += overflows
                log.warning("audit feed: kernel dropped audit records (receive buffer overflow)")
            with self._lock:
                if stop.is_set():
                    return
                for _ in range(overflows):
                    for sub in list(self._subs.values()):
                        self._call(sub.name, sub.subscriber.on_overflow)
                self._dispatch(datagrams, now)
                if now >= next_tick:
                    next_tick = now + _TICK_SECONDS
                    for sub in list(self._subs.values()):
                        self._call(sub.name, sub.subscriber.on_tick, now)

    def _dispatch(self, datagrams: list[bytes], now: float) -> None:
        batches: dict[str, _Batch] = {}
        assembler, by_type = self._assembler, self._by_type
        for data in datagrams:
            for mtype, payload in split_messages(data):
                for name, event in assembler.feed(mtype, payload, now):
                    batches.setdefault(name, _Batch()).events.append(event)
                for name in by_type.get(mtype, ()):
                    batches.setdefault(name, _Batch()).records.append((mtype, payload))
        for name, event in assembler.expire(now):
            batches.setdefault(name, _Batch()).events.append(event)
        for name, batch in batches.items():
            sub = self._subs.get(name)
            if sub is not None:
                self._call(name, sub.subscriber.on_audit, batch.events, batch.records, now)

    def _call(self, name: str, fn: Callable[..., None], *args: object) -> None:
        try:
            fn(*args)
        except Exception:  # one sensor's bug must not stop the others' feed; counted and logged
            self.failures += 1
            if self.failures == 1 or self.failures % 1000 == 0:
                log.exception("audit feed: subscriber %s failed (%d failures so far)", name, self.failures)


class AuditAttachment:
    """One sensor's use of audit: its subscription to the shared feed and its own keyed rules."""

    def __init__(self, feed: AuditFeed) -> None:
        self._feed = feed
        self._name: str | None = None
        self._rules: AuditRuleSession | None = None

    @property
    def attached(self) -> bool:
        return self._name is not None

    def attach(self, subscription: Subscription, rules: AuditRuleSession) -> None:
        """Join the feed, then install the rules, so no record after a rule goes unseen. Raises
        SensorUnavailable or OSError with nothing left behind."""
        try:
            self._feed.subscribe(subscription)
            self._name = subscription.name
            self._rules = rules
            rules.open()
        except (SensorUnavailable, OSError):
            self.detach()
            raise

    def detach(self) -> None:
        """Remove the rules, then leave the feed; does nothing when not attached."""
        if self._rules is not None:
            try:
                self._rules.close()
            except OSError as e:
                log.error("could not remove the audit rules %s: %s", self._rules.key, e)
            self._rules = None
        if self._name is not None:
            self._feed.unsubscribe(self._name)
            self._name = None
