"""Back-off per (account, source): doubling waits, other sources untouched, and one guessing report per window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from vigil.core.throttle import BackoffPolicy, SignInThrottle


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 12, 7, tzinfo=UTC)

    def now(self) -> datetime:
        return self.at

    def tick(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


def test_waits_double_per_source_and_leave_other_sources_alone() -> None:
    clock = Clock()
    t = SignInThrottle(BackoffPolicy(free_failures=3, max_seconds=8, guessing_failures=1000), clock)
    for _ in range(3):
        assert t.wait_seconds("admin", "10.0.0.1") == 0
        t.failed("admin", "10.0.0.1")
    assert t.wait_seconds("admin", "10.0.0.1") == 0  # three free failures
    waits = []
    for _ in range(6):
        t.failed("admin", "10.0.0.1")
        waits.append(t.wait_seconds("admin", "10.0.0.1"))
        clock.tick(waits[-1])
    assert waits == [1, 2, 4, 8, 8, 8]  # doubling, capped
    t.failed("admin", "10.0.0.1")
    assert t.wait_seconds("admin", "10.0.0.1") == 8
    assert t.wait_seconds("admin", "10.0.0.2") == 0  # the admin from elsewhere
    assert t.wait_seconds("alice", "10.0.0.1") == 0  # another account from the same source
    t.succeeded("admin", "10.0.0.1")
    assert t.wait_seconds("admin", "10.0.0.1") == 0


def test_a_quiet_source_starts_afresh() -> None:
    clock = Clock()
    t = SignInThrottle(BackoffPolicy(free_failures=1, max_seconds=10, guessing_failures=1000), clock)
    t.failed("a", "s")
    t.failed("a", "s")
    assert t.wait_seconds("a", "s") == 1
    clock.tick(21)
    t.failed("a", "s")
    assert t.wait_seconds("a", "s") == 0  # the first failure of a new run is free again


def test_sustained_guessing_is_reported_once_per_window() -> None:
    clock = Clock()
    t = SignInThrottle(BackoffPolicy(guessing_failures=5, guessing_window_seconds=60), clock)
    reports = []
    for i in range(12):
        reports.append(t.failed("admin", f"10.0.0.{i}") if i % 2 else t.refused("admin", f"10.0.0.{i}"))
        clock.tick(1)
    found = [r for r in reports if r]
    assert len(found) == 1 and found[0].account == "admin" and found[0].failures == 5
    assert found[0].sources == ("10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4")
    clock.tick(60)
    for _ in range(5):
        last = t.failed("admin", "10.9.9.9")
    assert last is not None  # a new window, a new report
    # Slow guessing (under the rate) is never reported.
    for _ in range(20):
        assert t.failed("slow", "s") is None
        clock.tick(16)  # at most four inside any 60 s
