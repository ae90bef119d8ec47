"""The server's composition root: settings, database, clock and engines, built once and injected."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa

from vigil.config import Settings
from vigil.core.clock import Clock
from vigil.core.mfa import MfaPolicy
from vigil.core.passwords import PasswordPolicy
from vigil.core.throttle import BackoffPolicy, SignInThrottle
from vigil.server.ingest import IngestPipeline
from vigil.server.password_strength import password_policy
from vigil.server.telemetry_bus import BusLink


class RateLimiter:
    """A sliding window per key: at most ``limit`` hits in ``window`` seconds."""

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit, self.window = limit, window
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            q = self._hits.setdefault(key, deque())
            while q and now - q[0] > self.window:
                q.popleft()
            if len(q) >= self.limit:
                return False
            q.append(now)
            return True

    def exhausted(self, key: str) -> bool:
        """Whether ``key`` used up its window, without counting this look as a hit."""
        now = time.monotonic()
        with self._lock:
            q = self._hits.get(key, deque())
            return sum(1 for t in q if now - t <= self.window) >= self.limit


@dataclass
class Services:
    settings: Settings
    engine: sa.Engine
    clock: Clock
    secret_key: bytes
    ingest: IngestPipeline
    enroll_limiter: RateLimiter = field(default_factory=lambda: RateLimiter(30))
    login_limiter: RateLimiter = field(default_factory=lambda: RateLimiter(20))
    version: str = ""
    # Built from settings.security: back-off per (account, source), the password and second-factor policies.
    sign_in_throttle: SignInThrottle = field(init=False)
    password_policy: PasswordPolicy = field(init=False)
    mfa_policy: MfaPolicy = field(init=False)
    # Set when settings.bus_url is: the agent API publishes batches to it instead of storing them itself.
    bus: BusLink | None = field(init=False)

    def __post_init__(self) -> None:
        self.bus = BusLink(self.settings) if self.settings.bus_url else None
        sec = self.settings.security
        self.sign_in_throttle = SignInThrottle(BackoffPolicy(
            free_failures=sec.sign_in_free_failures, max_seconds=float(sec.sign_in_max_backoff_seconds),
            guessing_failures=sec.guessing_alert_failures, guessing_window_seconds=60.0 * sec.guessing_alert_minutes,
        ), self.clock)
        self.password_policy = password_policy(self.settings.org_name)
        self.mfa_policy = MfaPolicy(frozenset(sec.require_mfa_roles), timedelta(days=sec.mfa_grace_days))
