"""The spool: batch ids persist before sending, rows leave only on ack, every loss is counted."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from vigil.agent.errors import SpoolError
from vigil.agent.health import read_health
from vigil.agent.spool import _SCHEMA, DROP_REJECTED, DROP_SPOOL_FULL, Batch, Spool, release_held
from vigil.wire import TelemetryAck


class FixedClock:
    def now(self) -> datetime:
        return datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    def monotonic(self) -> float:
        return 100.0


def row(i: int) -> dict[str, object]:
    return {
        "table": "DeviceEvents",
        "Timestamp": "2026-01-02T03:04:05+00:00",
        "ActionType": "AgentStarted",
        "ProcessId": i,
    }


def open_spool(path: Path, **kw: int) -> Spool:
    return Spool(path / "spool.db", FixedClock(), **kw)


def ack(batch_id: str, n: int) -> TelemetryAck:
    return TelemetryAck(batch_id=batch_id, accepted=n, duplicate=False)


def test_batch_assignment_survives_a_restart_and_is_resent_with_the_same_id(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    spool.append([row(i) for i in range(5)])
    first = spool.next_batch(max_events=3)
    assert first is not None and len(first) == 3
    spool.mark_sending(first)
    spool.close()  # the "crash": nothing acknowledged

    spool = open_spool(tmp_path)
    again = spool.next_batch(max_events=3)
    assert again is not None
    assert again.batch_id == first.batch_id
    assert again.seqs == first.seqs
    assert again.attempts == 1
    spool.acknowledge(again, ack(again.batch_id, 3))
    rest = spool.next_batch(max_events=3)
    assert rest is not None and rest.batch_id != first.batch_id and len(rest) == 2
    spool.close()


def test_rows_are_deleted_only_on_acknowledgement(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    spool.append([row(i) for i in range(4)])
    batch = spool.next_batch(max_events=10)
    assert batch is not None
    spool.mark_sending(batch)
    spool.mark_sending(batch)  # a retry does not count the rows twice
    assert spool.depth() == 4
    assert spool.acknowledge(batch, ack(batch.batch_id, 4)) == 4
    assert spool.depth() == 0
    assert spool.next_batch(max_events=10) is None
    c = spool.counters()
    assert (c.produced, c.spooled, c.sent, c.acknowledged, c.dropped) == (4, 4, 4, 4, {})
    assert spool.get_meta("last_upload_at") == "2026-01-02T03:04:05.000000+00:00"


def test_encoded_batch_carries_report_id_and_device_id(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    spool.append([row(7), row(8)])
    batch = spool.next_batch(max_events=10)
    assert batch is not None
    doc = orjson.loads(batch.encode("dev-1", "host.example"))
    assert doc["batch_id"] == batch.batch_id
    assert [e["ReportId"] for e in doc["events"]] == list(batch.seqs)
    assert all(e["DeviceId"] == "dev-1" and e["DeviceName"] == "host.example" for e in doc["events"])
    assert [e["ProcessId"] for e in doc["events"]] == [7, 8]
    assert all(e["table"] == "DeviceEvents" for e in doc["events"])


def test_report_ids_are_never_reused_after_deletion(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    spool.append([row(1)])
    b = spool.next_batch(10)
    assert b is not None
    spool.acknowledge(b, ack(b.batch_id, 1))
    spool.close()
    spool = open_spool(tmp_path)
    spool.append([row(2)])
    b2 = spool.next_batch(10)
    assert b2 is not None and b2.seqs[0] > b.seqs[0]


def test_cap_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    spool = open_spool(tmp_path, max_events=10)
    spool.append([row(i) for i in range(8)])
    spool.append([row(i) for i in range(8, 15)])
    assert spool.depth() == 10
    c = spool.counters()
    assert c.dropped == {DROP_SPOOL_FULL: 5}
    assert c.spooled == 15
    batch = spool.next_batch(max_events=100)
    assert batch is not None
    assert [orjson.loads(b)["ProcessId"] for b in batch.bodies] == list(range(5, 15))


def test_cap_can_empty_an_assigned_batch_and_the_spool_moves_on(tmp_path: Path) -> None:
    spool = open_spool(tmp_path, max_events=4)
    spool.append([row(i) for i in range(2)])
    old = spool.next_batch(max_events=2)
    assert old is not None
    spool.append([row(i) for i in range(2, 6)])  # pushes both rows of the old batch out
    nxt = spool.next_batch(max_events=10)
    assert nxt is not None and nxt.batch_id != old.batch_id
    assert spool.counters().dropped == {DROP_SPOOL_FULL: 2}


def test_byte_cap(tmp_path: Path) -> None:
    spool = open_spool(tmp_path, max_bytes=2_000)
    spool.append([row(i) for i in range(100)])
    assert 0 < spool.depth() < 100
    c = spool.counters()
    assert c.dropped[DROP_SPOOL_FULL] == 100 - spool.depth()


def test_rejected_batch_goes_to_dead_letter_and_is_counted(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    spool.append([row(i) for i in range(3)])
    batch = spool.next_batch(10)
    assert batch is not None
    spool.mark_sending(batch)
    assert spool.dead_letter(batch, 422, "invalid_batch", "events[0].Foo: unknown column", "events[0].Foo") == 3
    assert spool.depth() == 0
    (dl,) = spool.dead_letters()
    assert (dl.batch_id, dl.status, dl.field, dl.events) == (batch.batch_id, 422, "events[0].Foo", 3)
    c = spool.counters()
    assert c.dropped == {DROP_REJECTED: 3}
    assert c.spooled == c.acknowledged + sum(c.dropped.values()) + spool.depth()


def test_acknowledgement_for_another_batch_is_refused(tmp_path: Path) -> None:
    from vigil.agent.errors import SpoolError

    spool = open_spool(tmp_path)
    spool.append([row(1)])
    batch = spool.next_batch(10)
    assert batch is not None
    with pytest.raises(SpoolError):
        spool.acknowledge(batch, ack("someotherbatch", 1))
    assert spool.depth() == 1


def test_spool_uses_wal(tmp_path: Path) -> None:
    import sqlite3

    open_spool(tmp_path).close()
    db = sqlite3.connect(tmp_path / "spool.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_rows_waiting_for_a_flush_take_their_own_size_in_memory(tmp_path: Path) -> None:
    """A burst's rows wait in memory for their transaction: each as its JSON's bytes, not in the larger
    buffer the encoder wrote it into (which made a burst of 5,000 network rows cost 40 MiB)."""
    import tracemalloc

    spool = Spool(tmp_path / "spool.db", FixedClock(), flush_rows=100_000, flush_seconds=3600)
    rows = [{**row(i), "ProcessCommandLine": "x" * 300} for i in range(2_000)]
    size = sum(len(orjson.dumps(r)) for r in rows)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        spool.append(rows)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 1.5 * size + 64 * len(rows), (held, size)
    spool.flush()
    assert spool.depth() == 2_000


# -- held batches (set aside after repeated server errors) -------------------------------------------


def _held_batch(spool: Spool, n: int) -> Batch:
    spool.append([row(i) for i in range(n)])
    batch = spool.next_batch(max_events=n)
    assert batch is not None
    spool.mark_sending(batch)
    spool.hold(batch, 503, "server answered 503")
    return batch


def test_held_batch_stays_spooled_and_the_queue_moves_past_it(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    held = _held_batch(spool, 2)
    spool.append([row(i) for i in range(10, 13)])
    nxt = spool.next_batch(max_events=10)
    assert nxt is not None and nxt.batch_id != held.batch_id
    assert [orjson.loads(b)["ProcessId"] for b in nxt.bodies] == [10, 11, 12]
    spool.acknowledge(nxt, ack(nxt.batch_id, 3))
    assert spool.next_batch(max_events=10) is None  # only the held batch is left, and it is skipped
    assert spool.depth() == 2
    (h,) = spool.held()
    assert (h.batch_id, h.status, h.attempts, h.events) == (held.batch_id, 503, 1, 2)
    spool.close()

    health = read_health(tmp_path)
    assert (health.held_batches, health.held_events, health.spool_depth) == (1, 2, 2)


def test_released_batch_goes_first_with_its_own_id_and_leaves_on_ack(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    held = _held_batch(spool, 2)
    spool.append([row(i) for i in range(10, 13)])
    newer = spool.next_batch(max_events=1)  # a newer batch already assigned and waiting
    assert newer is not None
    # The operator's command runs beside the open spool (a running agent), on its own connection.
    (released,) = release_held(tmp_path / "spool.db")
    assert released.batch_id == held.batch_id
    again = spool.next_batch(max_events=10)
    assert again is not None
    assert (again.batch_id, again.seqs) == (held.batch_id, held.seqs)  # the same id: the server de-duplicates
    spool.acknowledge(again, ack(again.batch_id, 2))
    assert spool.held() == []
    c = spool.counters()
    assert c.acknowledged == 2 and c.dropped == {}
    spool.close()


def test_release_held_names_one_batch_and_dry_run_releases_none(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    first = _held_batch(spool, 1)
    second = _held_batch(spool, 2)
    path = tmp_path / "spool.db"
    assert [h.batch_id for h in release_held(path, dry_run=True)] == [first.batch_id, second.batch_id]
    assert len(spool.held()) == 2
    assert release_held(path, "no-such-batch") == []
    assert [h.batch_id for h in release_held(path, second.batch_id)] == [second.batch_id]
    assert [h.batch_id for h in spool.held()] == [first.batch_id]
    spool.close()


def test_release_held_without_a_spool_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SpoolError, match="no spool at"):
        release_held(tmp_path / "spool.db")


def test_cap_emptying_a_held_batch_counts_its_rows_and_unlists_it(tmp_path: Path) -> None:
    spool = open_spool(tmp_path, max_events=4)
    _held_batch(spool, 2)
    spool.append([row(i) for i in range(10, 14)])  # pushes the held batch's rows out
    assert spool.held() == []
    assert spool.counters().dropped == {DROP_SPOOL_FULL: 2}
    spool.close()


def test_a_spool_made_before_held_batches_existed_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    db = sqlite3.connect(path)
    old_schema = _SCHEMA.split("-- Batches set aside")[0] + (
        "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);"
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    )
    db.executescript(old_schema)
    db.execute("INSERT INTO events (batch_id, body, size) VALUES ('b1', ?, 2)", (b"{}",))
    db.execute("INSERT INTO batches VALUES ('b1', '2026-01-01T00:00:00+00:00', 3)")
    db.commit()
    db.close()
    # Read by an operator before the upgraded agent has run: nothing held, no error.
    assert read_health(tmp_path).held_batches == 0
    assert release_held(path) == []

    spool = open_spool(tmp_path)
    batch = spool.next_batch(max_events=10)
    assert batch is not None and (batch.batch_id, batch.attempts) == ("b1", 3)  # the old queue survives
    spool.hold(batch, 500, "server answered 500")
    assert [h.batch_id for h in spool.held()] == ["b1"]
    spool.close()


def test_rows_the_server_refused_in_an_acknowledged_batch_count_as_rejected(tmp_path: Path) -> None:
    spool = open_spool(tmp_path)
    spool.append([row(i) for i in range(5)])
    batch = spool.next_batch(10)
    assert batch is not None
    spool.mark_sending(batch)
    spool.acknowledge(batch, TelemetryAck(batch_id=batch.batch_id, accepted=3, duplicate=False, rejected=2))
    c = spool.counters()
    assert (c.sent, c.acknowledged, c.dropped) == (5, 3, {DROP_REJECTED: 2})
    assert c.spooled == c.acknowledged + sum(c.dropped.values()) + spool.depth()
