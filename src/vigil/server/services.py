"""The server's composition root: settings, database, clock and engines, built once and injected."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import sqlalchemy as sa

from vigil.config import Settings
from vigil.core.clock import Clock
from vigil.server.ingest import IngestPipeline


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
    # Failed sign-ins per account, so that guessing one password from many addresses is throttled too.
    account_limiter: RateLimiter = field(default_factory=lambda: RateLimiter(10, 300.0))
    version: str = ""
