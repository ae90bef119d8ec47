"""Sign-in throttling per (account, source) with exponential back-off, and the detector of sustained guessing.

There is no lock-out: failures from one source slow down that source only, so a stranger cannot keep
an administrator out by guessing from elsewhere. Guessing one account from many sources is not slowed
per account (that is exactly what would let it lock the account); it is reported instead.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from vigil.core.clock import Clock

# The identity alert a guessing report raises (ATT&CK T1110, Brute Force).
GUESSING_RULE_ID = "vigil-password-guessing"
GUESSING_TECHNIQUE = "T1110"


@dataclass(frozen=True)
class BackoffPolicy:
    free_failures: int = 5  # failures from one source before any wait
    base_seconds: float = 1.0  # the first wait; each further failure doubles it
    max_seconds: float = 900.0
    guessing_failures: int = 20  # this many failures for one account, from any sources...
    guessing_window_seconds: float = 600.0  # ...within this window make one guessing report
    max_entries: int = 100_000  # bounds the memory a flood of made-up names or addresses can take


@dataclass(frozen=True)
class GuessingReport:
    """Sustained guessing of one account: reported once per window."""

    account: str
    failures: int
    sources: tuple[str, ...]
    window_seconds: float


@dataclass
class _Source:
    failures: int = 0
    last_failure: float = 0.0
    blocked_until: float = 0.0


@dataclass
class _Account:
    failures: deque[tuple[float, str]] = field(default_factory=deque)
    reported_until: float = 0.0


class SignInThrottle:
    """In-memory, per server process: a restart forgets the back-off (it is a delay, not a record)."""

    def __init__(self, policy: BackoffPolicy, clock: Clock) -> None:
        self.policy, self._clock = policy, clock
        self._sources: OrderedDict[tuple[str, str], _Source] = OrderedDict()
        self._accounts: OrderedDict[str, _Account] = OrderedDict()
        self._lock = threading.Lock()

    def _now(self) -> float:
        return self._clock.now().timestamp()

    def wait_seconds(self, account: str, source: str) -> int:
        """How long ``source`` must wait before it may try ``account`` again; 0 when it may now."""
        now = self._now()
        with self._lock:
            entry = self._sources.get((account, source))
            if entry is None or entry.blocked_until <= now:
                return 0
            return max(1, math.ceil(entry.blocked_until - now))

    def failed(self, account: str, source: str) -> GuessingReport | None:
        """Count a wrong password or code; returns a report when this failure makes the account's guessing sustained."""
        p, now = self.policy, self._now()
        with self._lock:
            entry = self._entry(account, source, now)
            entry.failures += 1
            entry.last_failure = now
            over = entry.failures - p.free_failures
            if over > 0:
                entry.blocked_until = now + min(p.max_seconds, p.base_seconds * 2 ** min(over - 1, 40))
            return self._count_for_account(account, source, now)

    def refused(self, account: str, source: str) -> GuessingReport | None:
        """An attempt refused while waiting: no longer wait, but still evidence of guessing."""
        now = self._now()
        with self._lock:
            return self._count_for_account(account, source, now)

    def succeeded(self, account: str, source: str) -> None:
        with self._lock:
            self._sources.pop((account, source), None)

    def _entry(self, account: str, source: str, now: float) -> _Source:
        key = (account, source)
        entry = self._sources.get(key)
        # A source quiet for twice the longest wait starts afresh, so old typos do not add up for ever.
        if entry is None or now - entry.last_failure > 2 * self.policy.max_seconds:
            entry = self._sources[key] = _Source()
        self._sources.move_to_end(key)
        while len(self._sources) > self.policy.max_entries:
            self._sources.popitem(last=False)
        return entry

    def _count_for_account(self, account: str, source: str, now: float) -> GuessingReport | None:
        p = self.policy
        acc = self._accounts.get(account) or self._accounts.setdefault(account, _Account())
        self._accounts.move_to_end(account)
        while len(self._accounts) > p.max_entries:
            self._accounts.popitem(last=False)
        acc.failures.append((now, source))
        while acc.failures and now - acc.failures[0][0] > p.guessing_window_seconds:
            acc.failures.popleft()
        while len(acc.failures) > p.guessing_failures:
            acc.failures.popleft()
        if len(acc.failures) < p.guessing_failures or now < acc.reported_until:
            return None
        acc.reported_until = now + p.guessing_window_seconds
        sources = tuple(sorted({s for _, s in acc.failures}))
        return GuessingReport(account, len(acc.failures), sources, p.guessing_window_seconds)
