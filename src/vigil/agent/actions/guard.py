"""Command verification: pinned-key signature, target device, bounded lifetime, freshness and replay, in that order."""

from __future__ import annotations

import sqlite3
import threading
from datetime import timedelta
from pathlib import Path

from vigil.agent.actions.base import CommandRefused
from vigil.agent.clock import Clock
from vigil.wire import SignedCommand, signature_valid

SEEN_FILE = "actions.db"
# Clocks drift; a command issued slightly "in the future" by the server's clock is still accepted.
CLOCK_SKEW = timedelta(minutes=5)


class SeenCommands:
    """Action ids and nonces already accepted, kept until their commands expire (then replay is moot)."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS seen (action_id TEXT PRIMARY KEY, nonce TEXT NOT NULL UNIQUE,"
                         " expires_at REAL NOT NULL, seen_at REAL NOT NULL)")
        self._lock = threading.Lock()

    def claim(self, action_id: str, nonce: str, expires_at: float, now: float) -> bool:
        """Record the command; False if its id or nonce was seen before (a replay)."""
        with self._lock:
            self._db.execute("DELETE FROM seen WHERE expires_at < ?", (now - CLOCK_SKEW.total_seconds() - 86400,))
            try:
                self._db.execute("INSERT INTO seen VALUES (?, ?, ?, ?)", (action_id, nonce, expires_at, now))
            except sqlite3.IntegrityError:
                return False
            return True

    def close(self) -> None:
        self._db.close()


class CommandGuard:
    def __init__(self, public_key: str | None, device_id: str, seen: SeenCommands, clock: Clock) -> None:
        self._key, self._device, self._seen, self._clock = public_key, device_id, seen, clock

    def check(self, signed: SignedCommand) -> None:
        """Raise CommandRefused unless the command is authentic, ours, fresh and new."""
        cmd = signed.command
        if not self._key:
            raise CommandRefused("no_pinned_key", "this device was enrolled without the server's action-signing key;"
                                 " re-enroll it with a current onboarding package")
        if not signed.signature:
            raise CommandRefused("unsigned", "the command carries no signature")
        if not signature_valid(self._key, signed):
            raise CommandRefused("bad_signature", "the signature does not verify with the pinned server key")
        if cmd.device_id != self._device:
            raise CommandRefused("other_device", f"the command is for device {cmd.device_id}, not this one")
        now = self._clock.now()
        # Checked after the signature: the window is signed, so only the server's own key could have widened it.
        problem = cmd.lifetime_problem()
        if problem:
            raise CommandRefused("lifetime", problem)
        if cmd.expires_at <= now:
            raise CommandRefused("expired", f"the command expired at {cmd.expires_at.isoformat()}")
        if cmd.issued_at > now + CLOCK_SKEW:
            raise CommandRefused("not_yet_valid", f"the command is issued in the future ({cmd.issued_at.isoformat()})")
        if not self._seen.claim(cmd.action_id, cmd.nonce, cmd.expires_at.timestamp(), now.timestamp()):
            raise CommandRefused("replay", f"action {cmd.action_id} (or its nonce) was received before")
