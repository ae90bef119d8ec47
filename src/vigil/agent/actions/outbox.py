"""Result reports not yet acknowledged by the server, kept in actions.db so they survive agent restarts."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from vigil.wire import ActionResult

# A report older than this is for an action the server timed out long ago; it is dropped, not sent forever.
MAX_AGE_SECONDS = 7 * 86400


class ResultOutbox:
    """The latest unsent result per action; a later status supersedes an earlier one (statuses only advance)."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS unsent_results (action_id TEXT PRIMARY KEY,"
                         " result TEXT NOT NULL, queued_at REAL NOT NULL)")
        self._lock = threading.Lock()

    def put(self, action_id: str, result: ActionResult) -> str:
        """Queue ``result``; returns the stored text, which ``sent`` needs to remove exactly this report."""
        text = result.model_dump_json()
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO unsent_results VALUES (?, ?, ?)", (action_id, text, time.time()))
        return text

    def sent(self, action_id: str, text: str) -> None:
        """Forget a report once the server acknowledged it, unless a newer one was queued meanwhile."""
        with self._lock:
            self._db.execute("DELETE FROM unsent_results WHERE action_id = ? AND result = ?", (action_id, text))

    def pending(self) -> list[tuple[str, str]]:
        """Unsent reports, oldest first, as (action id, stored text)."""
        with self._lock:
            self._db.execute("DELETE FROM unsent_results WHERE queued_at < ?", (time.time() - MAX_AGE_SECONDS,))
            rows = self._db.execute("SELECT action_id, result FROM unsent_results ORDER BY queued_at").fetchall()
        return [(str(a), str(r)) for a, r in rows]

    def close(self) -> None:
        self._db.close()
