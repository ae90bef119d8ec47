"""The local spool: a SQLite (WAL) queue of telemetry rows, batch assignments and loss counters.

Rows wait here until the server acknowledges their batch. A batch's id is stored before the first
send, so a resend after a crash or an outage reuses it and the server can de-duplicate. Every row
that leaves without an acknowledgement is counted under ``dropped.<reason>``. Appended rows are
written in one transaction per ``flush_rows`` rows or ``flush_seconds``, whichever comes first.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from vigil.agent.clock import Clock, iso
from vigil.agent.errors import SpoolError
from vigil.wire import MAX_BATCH_BYTES, AgentCounters, TelemetryAck

log = logging.getLogger(__name__)

SPOOL_FILE = "spool.db"
DROP_SPOOL_FULL = "spool_full"
DROP_REJECTED = "rejected_by_server"
DROP_SPOOL_ERROR = "spool_error"
DEAD_LETTER_KEEP = 100  # rejected batches kept for inspection; older ones go (they are counted)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: a ReportId is never reused
    batch_id TEXT,
    body BLOB NOT NULL,
    size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_batch ON events (batch_id, seq);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS dead_letter (
    batch_id TEXT PRIMARY KEY,
    rejected_at TEXT NOT NULL,
    status INTEGER NOT NULL,
    error TEXT NOT NULL,
    detail TEXT NOT NULL,
    field TEXT,
    events INTEGER NOT NULL,
    body BLOB NOT NULL
);
-- Batches set aside after repeated 5xx answers while the server was otherwise up: their rows stay in
-- events (still spooled, still counted), next_batch skips them until `vigil agent resend-held`.
CREATE TABLE IF NOT EXISTS held (
    batch_id TEXT PRIMARY KEY,
    held_at TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    status INTEGER,
    error TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Batch:
    """Rows assigned to one batch id, as stored (without ReportId/DeviceId, added when encoding)."""

    batch_id: str
    seqs: tuple[int, ...]
    bodies: tuple[bytes, ...]
    attempts: int

    def __len__(self) -> int:
        return len(self.seqs)

    def encode(self, device_id: str, device_name: str | None = None) -> bytes:
        """The JSON request body; ReportId is the spool sequence, spliced into each stored object."""
        ident = b'"DeviceId":' + orjson.dumps(device_id) + b","
        if device_name:
            ident += b'"DeviceName":' + orjson.dumps(device_name) + b","
        parts = [b'{"ReportId":%d,' % seq + ident + body[1:] for seq, body in zip(self.seqs, self.bodies, strict=True)]
        return b'{"batch_id":' + orjson.dumps(self.batch_id) + b',"events":[' + b",".join(parts) + b"]}"


@dataclass(frozen=True)
class HeldBatch:
    batch_id: str
    held_at: str
    attempts: int
    status: int | None
    error: str
    events: int


@dataclass(frozen=True)
class DeadLetter:
    batch_id: str
    rejected_at: str
    status: int
    error: str
    detail: str
    field: str | None
    events: int


class Spool:
    """Thread-safe: sensors append from their threads while the uploader takes batches."""

    def __init__(
        self, path: Path, clock: Clock, max_events: int = 5_000_000, max_bytes: int = 1 << 30,
        flush_rows: int = 2_000, flush_seconds: float = 0.05,
    ) -> None:
        self.path = path
        self._clock = clock
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._unsaved_drops: dict[str, int] = {}
        # Rows appended but not yet written: a transaction per row costs 3-4 times the insert, so
        # rows are grouped. They are counted (produced, spooled) when written, so the counters
        # stay exact; a crash loses at most ``flush_seconds`` of rows, like the sensors' own queues.
        self._pending: list[bytes] = []
        self._pending_since = 0.0
        self._flush_rows = flush_rows
        self._flush_seconds = flush_seconds
        self._wake = threading.Condition(self._lock)
        self._flusher: threading.Thread | None = None
        self._closed = False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a crash, not power loss
            self._db.execute("PRAGMA busy_timeout=5000")
            # Rows are written once and read once, in order: a large page cache only holds the agent's
            # memory (SQLite's default grows to ~8 MiB after a burst and keeps it).
            self._db.execute("PRAGMA cache_size=-1024")
            self._db.executescript(_SCHEMA)
            self._count, self._bytes = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM events"
            ).fetchone()
        except sqlite3.Error as e:
            raise SpoolError(f"cannot open the spool at {path}: {e}") from e

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._write_pending()
            self._save_drops()
            self._wake.notify_all()
            flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.join(timeout=5)
        with self._lock:
            self._db.close()

    def flush(self) -> None:
        """Write the rows appended so far (readers of the database see them after this)."""
        with self._lock:
            self._write_pending()

    def record_dropped(self, reason: str, count: int) -> None:
        """Count events a sensor or the budget dropped before the spool; they count as produced too.

        Kept in memory and written with the next append (or read of the counters), so the hot path
        of a sensor that is shedding load does not also pay for a transaction."""
        if count <= 0:
            return
        with self._lock:
            self._unsaved_drops[reason] = self._unsaved_drops.get(reason, 0) + count

    def _save_drops(self) -> None:
        if not self._unsaved_drops:
            return
        try:
            with self._tx() as db:
                for reason, n in self._unsaved_drops.items():
                    self._bump(db, "produced", n)
                    self._bump(db, f"dropped.{reason}", n)
            self._unsaved_drops.clear()
        except sqlite3.Error as e:
            log.error("cannot save drop counters (kept in memory): %s", e)

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _bump(self, db: sqlite3.Connection, name: str, by: int) -> None:
        if by:
            db.execute(
                "INSERT INTO counters (name, value) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                (name, by),
            )

    # -- intake -------------------------------------------------------------------------------

    def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Store rows; never raises, because a sensor thread calls it: failures are counted."""
        if not rows:
            return
        # orjson's bytes sit in a 4-8 KiB buffer whatever their length: held by the thousand until a flush, that
        # was tens of MiB of a burst's peak RSS. An exact copy costs 0.1 µs a row.
        bodies = [memoryview(orjson.dumps(r)).tobytes() for r in rows]
        with self._lock:
            first = not self._pending
            if first:
                self._pending_since = time.monotonic()
            self._pending += bodies
            if self._closed or self._flush_seconds <= 0 or len(self._pending) >= self._flush_rows:
                self._write_pending()
            elif self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_loop, name="vigil-spool-flush", daemon=True)
                self._flusher.start()
            elif first:  # otherwise the flusher is already timing the pending rows
                self._wake.notify()

    def _flush_loop(self) -> None:
        with self._wake:
            while not self._closed:
                if not self._pending:
                    self._wake.wait()
                    continue
                rest = self._pending_since + self._flush_seconds - time.monotonic()
                if rest > 0:
                    self._wake.wait(rest)
                    continue
                self._write_pending()

    def _write_pending(self) -> None:
        """One transaction for every pending row; called with the lock held."""
        bodies, self._pending = self._pending, []
        if not bodies:
            return
        try:
            with self._tx() as db:
                db.executemany("INSERT INTO events (body, size) VALUES (?, ?)", [(b, len(b)) for b in bodies])
                self._bump(db, "produced", len(bodies))
                self._bump(db, "spooled", len(bodies))
                for reason, n in self._unsaved_drops.items():
                    self._bump(db, "produced", n)
                    self._bump(db, f"dropped.{reason}", n)
                self._count += len(bodies)
                self._bytes += sum(map(len, bodies))
                self._enforce_cap(db)
            self._unsaved_drops.clear()
        except sqlite3.Error as e:
            # Counted now, written with the next successful write (the database may be full).
            self._unsaved_drops[DROP_SPOOL_ERROR] = self._unsaved_drops.get(DROP_SPOOL_ERROR, 0) + len(bodies)
            log.error("spool write failed, %d events dropped: %s", len(bodies), e)
            self._count, self._bytes = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM events"
            ).fetchone()

    def _enforce_cap(self, db: sqlite3.Connection) -> None:
        """Drop the oldest rows until the spool fits its caps again, and count them."""
        while self._count > self._max_events or self._bytes > self._max_bytes:
            over_rows = max(self._count - self._max_events, 0)
            over_bytes = max(self._bytes - self._max_bytes, 0)
            oldest = db.execute(
                "SELECT seq, size FROM events ORDER BY seq LIMIT ?", (max(over_rows, 1000),)
            ).fetchall()
            if not oldest:
                break
            n = freed = 0
            for _seq, size in oldest:
                if n >= over_rows and freed >= over_bytes:
                    break
                n += 1
                freed += size
            db.execute("DELETE FROM events WHERE seq <= ?", (oldest[n - 1][0],))
            self._count -= n
            self._bytes -= freed
            self._bump(db, f"dropped.{DROP_SPOOL_FULL}", n)
            # A held batch the cap emptied is gone (its rows are counted above): not listed as held any more.
            db.execute(
                "DELETE FROM held WHERE batch_id NOT IN (SELECT batch_id FROM events WHERE batch_id IS NOT NULL)"
            )
            log.warning("spool full: dropped the %d oldest events", n)

    # -- batches ------------------------------------------------------------------------------

    def next_batch(self, max_events: int, max_bytes: int = MAX_BATCH_BYTES * 3 // 4) -> Batch | None:
        """The oldest batch not yet acknowledged, or a new one made of the oldest unbatched rows."""
        with self._lock:
            self._write_pending()
        with self._lock, self._tx() as db:
            while True:
                pending = db.execute(
                    "SELECT batch_id, attempts FROM batches WHERE batch_id NOT IN (SELECT batch_id FROM held)"
                    " ORDER BY rowid LIMIT 1"
                ).fetchone()
                if pending is None:
                    break
                rows = db.execute(
                    "SELECT seq, body FROM events WHERE batch_id = ? ORDER BY seq", (pending[0],)
                ).fetchall()
                if rows:
                    return Batch(pending[0], tuple(r[0] for r in rows), tuple(r[1] for r in rows), pending[1])
                db.execute("DELETE FROM batches WHERE batch_id = ?", (pending[0],))  # emptied by the cap
            candidates = db.execute(
                "SELECT seq, body, size FROM events WHERE batch_id IS NULL ORDER BY seq LIMIT ?", (max_events,)
            ).fetchall()
            if not candidates:
                return None
            chosen: list[tuple[int, bytes]] = []
            total = 0
            for seq, body, size in candidates:
                if chosen and total + size > max_bytes:
                    break
                chosen.append((seq, body))
                total += size
            batch_id = uuid.uuid4().hex
            db.execute(
                "UPDATE events SET batch_id = ? WHERE batch_id IS NULL AND seq BETWEEN ? AND ?",
                (batch_id, chosen[0][0], chosen[-1][0]),
            )
            db.execute(
                "INSERT INTO batches (batch_id, created_at) VALUES (?, ?)", (batch_id, iso(self._clock.now()))
            )
            return Batch(batch_id, tuple(c[0] for c in chosen), tuple(c[1] for c in chosen), 0)

    def mark_sending(self, batch: Batch) -> None:
        """Record an attempt; the first attempt counts the batch's rows as sent."""
        with self._lock, self._tx() as db:
            found = db.execute("SELECT attempts FROM batches WHERE batch_id = ?", (batch.batch_id,)).fetchone()
            if found is None:
                return
            db.execute("UPDATE batches SET attempts = attempts + 1 WHERE batch_id = ?", (batch.batch_id,))
            if found[0] == 0:
                self._bump(db, "sent", len(batch))

    def acknowledge(self, batch: Batch, ack: TelemetryAck) -> int:
        """The server has the batch: delete its rows. Returns how many rows were released.

        Rows the server refused (``ack.rejected``) count as rejected, the rest as acknowledged."""
        if ack.batch_id != batch.batch_id:
            raise SpoolError(f"acknowledgement for batch {ack.batch_id} while sending {batch.batch_id}")
        with self._lock, self._tx() as db:
            released = self._release(db, batch.batch_id)
            rejected = min(max(ack.rejected, 0), released)
            self._bump(db, "acknowledged", released - rejected)
            self._bump(db, f"dropped.{DROP_REJECTED}", rejected)
            self._set_meta(db, "last_upload_at", iso(self._clock.now()))
        return released

    def hold(self, batch: Batch, status: int | None, error: str) -> None:
        """Set the batch aside: kept in the spool, skipped by ``next_batch`` until released."""
        with self._lock, self._tx() as db:
            attempts = db.execute("SELECT attempts FROM batches WHERE batch_id = ?", (batch.batch_id,)).fetchone()
            db.execute(
                "INSERT OR REPLACE INTO held VALUES (?, ?, ?, ?, ?)",
                (batch.batch_id, iso(self._clock.now()), attempts[0] if attempts else 0, status, error[:1000]),
            )

    def held(self) -> list[HeldBatch]:
        with self._lock:
            self._write_pending()  # the cap may empty a held batch when pending rows are written
            return held_batches(self._db)

    def dead_letter(self, batch: Batch, status: int, error: str, detail: str, field: str | None) -> int:
        """The server refused the batch for good: keep it aside, count its rows as dropped."""
        with self._lock, self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO dead_letter VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (batch.batch_id, iso(self._clock.now()), status, error, detail, field, len(batch),
                 b"[" + b",".join(batch.bodies) + b"]"),
            )
            released = self._release(db, batch.batch_id)
            self._bump(db, f"dropped.{DROP_REJECTED}", released)
            db.execute(
                "DELETE FROM dead_letter WHERE rowid NOT IN"
                " (SELECT rowid FROM dead_letter ORDER BY rejected_at DESC LIMIT ?)",
                (DEAD_LETTER_KEEP,),
            )
        return released

    def _release(self, db: sqlite3.Connection, batch_id: str) -> int:
        n, size = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM events WHERE batch_id = ?", (batch_id,)
        ).fetchone()
        db.execute("DELETE FROM events WHERE batch_id = ?", (batch_id,))
        db.execute("DELETE FROM batches WHERE batch_id = ?", (batch_id,))
        db.execute("DELETE FROM held WHERE batch_id = ?", (batch_id,))
        self._count -= n
        self._bytes -= size
        return int(n)

    # -- state --------------------------------------------------------------------------------

    def counters(self) -> AgentCounters:
        with self._lock:
            self._write_pending()
            self._save_drops()
            return read_counters(self._db)

    def depth(self) -> int:
        with self._lock:
            self._write_pending()
            return int(self._count)

    def dead_letters(self) -> list[DeadLetter]:
        with self._lock:
            rows = self._db.execute(
                "SELECT batch_id, rejected_at, status, error, detail, field, events FROM dead_letter"
                " ORDER BY rejected_at"
            ).fetchall()
        return [DeadLetter(*r) for r in rows]

    def set_meta(self, key: str, value: str) -> None:
        with self._lock, self._tx() as db:
            self._set_meta(db, key, value)

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            return read_meta(self._db, key)

    @staticmethod
    def _set_meta(db: sqlite3.Connection, key: str, value: str) -> None:
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))


def read_counters(db: sqlite3.Connection) -> AgentCounters:
    values = dict(db.execute("SELECT name, value FROM counters").fetchall())
    dropped = {k.removeprefix("dropped."): v for k, v in values.items() if k.startswith("dropped.")}
    return AgentCounters(
        produced=values.get("produced", 0),
        spooled=values.get("spooled", 0),
        sent=values.get("sent", 0),
        acknowledged=values.get("acknowledged", 0),
        dropped=dropped,
    )


def held_batches(db: sqlite3.Connection) -> list[HeldBatch]:
    """The held batches, oldest first; none in a spool made before holding existed."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'held'").fetchone() is None:
        return []
    rows = db.execute(
        "SELECT h.batch_id, h.held_at, h.attempts, h.status, h.error,"
        " (SELECT COUNT(*) FROM events e WHERE e.batch_id = h.batch_id) FROM held h ORDER BY h.held_at, h.rowid"
    ).fetchall()
    return [HeldBatch(*r) for r in rows]


def release_held(path: Path, batch_id: str | None = None, dry_run: bool = False) -> list[HeldBatch]:
    """Put held batches (all, or the one named) back in the queue, ahead of newer ones; returns them
    (with ``dry_run``, only returns them).

    Works beside a running agent (its uploader picks them up at its next pass) or a stopped one."""
    if not path.exists():
        raise SpoolError(f"no spool at {path} (is this the agent's state directory?)")
    try:
        db = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error as e:
        raise SpoolError(f"cannot open the spool at {path}: {e}") from e
    try:
        db.execute("PRAGMA busy_timeout=5000")
        db.execute("BEGIN IMMEDIATE")
        chosen = [h for h in held_batches(db) if batch_id is None or h.batch_id == batch_id]
        if chosen and not dry_run:  # (a spool made before holding existed has no held table)
            db.executemany("DELETE FROM held WHERE batch_id = ?", [(h.batch_id,) for h in chosen])
        db.execute("ROLLBACK" if dry_run else "COMMIT")
        return chosen
    except sqlite3.Error as e:
        raise SpoolError(f"cannot release held batches in {path}: {e}") from e
    finally:
        db.close()


def read_meta(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])
