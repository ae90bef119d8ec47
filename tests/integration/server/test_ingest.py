"""Telemetry ingest: good batches stored once, bad rows refused with a reason and the rest stored."""

from __future__ import annotations

import gzip
import uuid

import orjson
import pytest
import sqlalchemy as sa

from tests.integration.server.test_enrollment import _count
from tests.support import VigilServer, enroll_raw, post_batch, process_event
from vigil.store.db import make_engine
from vigil.store.schema import telemetry_tables


@pytest.fixture
def device(server: VigilServer) -> dict[str, str]:
    pkg = server.onboarding_package(expires="1h")
    return dict(enroll_raw(server, pkg["token"]).json())


def test_batch_is_stored_and_resend_is_idempotent(server: VigilServer, device: dict[str, str]) -> None:
    events = [process_event(device["device_id"], i) for i in range(1, 101)]
    batch_id = uuid.uuid4().hex
    first = post_batch(server, device["credential"], events, batch_id)
    assert first.json() == {"batch_id": batch_id, "accepted": 100, "duplicate": False, "rejected": 0,
                            "rejections": []}
    again = post_batch(server, device["credential"], events, batch_id)
    assert again.json() == {"batch_id": batch_id, "accepted": 100, "duplicate": True, "rejected": 0,
                            "rejections": []}
    assert _count(server) == 100


@pytest.mark.parametrize(
    ("mutate", "status", "field"),
    [
        (lambda e: e.update(ProcessId="12"), 422, "events[1].ProcessId"),
        (lambda e: e.update(table="DeviceRegistryEvents"), 422, "events[1].table"),
        (lambda e: e.update(Bogus=1), 422, "events[1].Bogus"),
        (lambda e: e.pop("Timestamp"), 422, "events[1].Timestamp"),
        (lambda e: e.update(Timestamp="yesterday"), 422, "events[1].Timestamp"),
        (lambda e: e.update(ActionType="FileCreated"), 422, "events[1].ActionType"),
        (lambda e: e.update(AdditionalFields="{}"), 422, "events[1].AdditionalFields"),
        (lambda e: e.update(ProcessId=2**63), 422, "events[1].ProcessId"),
        (lambda e: e.update(ProcessId=-1), 422, "events[1].ProcessId"),
        (lambda e: e.update(Timestamp="0001-01-01T00:00:00+05:00"), 422, "events[1].Timestamp"),
        (lambda e: e.update(Timestamp="1999-12-31T23:59:59Z"), 422, "events[1].Timestamp"),
        (lambda e: e.update(Timestamp="2999-01-01T00:00:00Z"), 422, "events[1].Timestamp"),
        (lambda e: e.update(FileName="a\x00b"), 422, "events[1].FileName"),
        (lambda e: e.update(DeviceName="h" * 256), 422, "events[1].DeviceName"),
        (lambda e: e.update(AdditionalFields=_nested(250)), 422, "events[1].AdditionalFields"),
        (lambda e: e.update(AdditionalFields=_nested(33)), 422, "events[1].AdditionalFields"),
    ],
)
def test_a_bad_row_is_rejected_by_name_and_the_rest_stored(server, device, mutate, status, field) -> None:  # type: ignore[no-untyped-def]
    events = [process_event(device["device_id"], i) for i in range(3)]
    mutate(events[1])
    r = post_batch(server, device["credential"], [events[1]])  # nothing good in it: refused whole, by name
    alone = field.replace("events[1]", "events[0]")
    assert r.status_code == status, r.text
    assert r.json()["field"] == alone
    assert alone in r.json()["detail"]
    assert _count(server) == 0
    r = post_batch(server, device["credential"], events)
    assert r.status_code == 200, r.text
    ack = r.json()
    assert (ack["accepted"], ack["rejected"]) == (2, 1)
    (rejection,) = ack["rejections"]
    assert f"events[{rejection['index']}].{rejection['field']}" == field
    assert rejection["table"] == ("DeviceProcessEvents" if field != "events[1].table" else None)
    assert _count(server) == 2
    assert _count(server, "DeviceEvents") == 1  # the server's record of the gap, once


def _nested(depth: int) -> dict[str, object]:
    value: dict[str, object] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_a_partial_batch_is_recorded_once_counted_and_logged_without_traceback(
    sqlite_server: VigilServer,
) -> None:
    server = sqlite_server
    dev = enroll_raw(server, server.onboarding_package()["token"]).json()
    events = [process_event(dev["device_id"], i) for i in range(5)]
    events[1]["Timestamp"] = "0001-01-01T00:00:00+05:00"
    events[3]["RemotePort"] = 1
    events.append({"table": "NoSuchTable"})
    batch_id = uuid.uuid4().hex
    ack = post_batch(server, dev["credential"], events, batch_id).json()
    assert (ack["accepted"], ack["rejected"]) == (3, 3)
    assert [(r["index"], r["table"], r["field"]) for r in ack["rejections"]] == [
        (1, "DeviceProcessEvents", "Timestamp"), (3, "DeviceProcessEvents", "RemotePort"), (5, None, "table")]
    again = post_batch(server, dev["credential"], events, batch_id).json()
    assert again["duplicate"] and again["rejected"] == 3
    engine = make_engine(f"sqlite:///{server.data_dir / 'vigil.db'}")
    try:
        with engine.connect() as conn:
            (row,) = conn.execute(sa.select(telemetry_tables["DeviceEvents"])).mappings().all()
    finally:
        engine.dispose()
    assert (row["ActionType"], row["DeviceId"], row["ReportId"]) == ("TelemetryRowsRejected", dev["device_id"], 0)
    details = orjson.loads(row["AdditionalFields"])
    assert details["BatchId"] == batch_id and details["RejectedRows"] == 3 and details["AcceptedRows"] == 3
    assert details["RejectedByTable"] == {"DeviceProcessEvents": 2, "unknown": 1}
    with server.client(server.admin_token()) as c:
        text = c.get("/metrics").text
    assert 'vigil_ingest_rejected_rows_total{table="DeviceProcessEvents"} 2' in text
    assert 'vigil_ingest_rejected_rows_total{table="unknown"} 1' in text
    log = server.log.read_text()
    assert log.count(f"batch {batch_id} of device") == 1, "one line per batch, not per row nor per resend"
    assert "Traceback" not in log


def test_malformed_and_oversized_bodies(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    pkg = server.onboarding_package()
    dev = enroll_raw(server, pkg["token"]).json()
    auth = {"Authorization": f"Bearer {dev['credential']}"}
    with server.client() as c:
        r = c.post("/agent/v1/telemetry", content=b'{"batch_id": "abc', headers=auth)
        assert r.status_code == 400 and r.json()["error"] == "malformed_json"
        r = c.post("/agent/v1/telemetry", content=b"not gzip", headers={**auth, "Content-Encoding": "gzip"})
        assert r.status_code == 400 and r.json()["error"] == "bad_encoding"
        r = c.post("/agent/v1/telemetry", content=b"[]", headers=auth)
        assert r.status_code == 422
        # A compression bomb: 64 MiB of zeros in a small gzip body.
        bomb = gzip.compress(b"0" * (64 * 1024 * 1024))
        r = c.post("/agent/v1/telemetry", content=bomb, headers={**auth, "Content-Encoding": "gzip"})
        assert r.status_code == 413
    too_many = [process_event(dev["device_id"], i) for i in range(5001)]
    r = post_batch(server, dev["credential"], too_many)
    assert r.status_code == 413 and r.json()["field"] == "events"
    huge_cmd = [process_event(dev["device_id"], 1, ProcessCommandLine="A" * 40_000)]
    r = post_batch(server, dev["credential"], huge_cmd)
    assert r.status_code == 422 and r.json()["field"] == "events[0].ProcessCommandLine"
    assert _count(server) == 0
    # After all that the server still stores a good batch.
    ok = post_batch(server, dev["credential"], [process_event(dev["device_id"], 1)], compress=False)
    assert ok.status_code == 200 and _count(server) == 1
    with server.client() as c:
        assert c.get("/api/health").json()["status"] == "ok"


def test_every_table_accepts_its_declared_columns(sqlite_server: VigilServer) -> None:
    """A row per table with every declared column filled round-trips through the timeline."""
    from vigil.core.telemetry import TABLES, ColumnType

    server = sqlite_server
    dev = enroll_raw(server, server.onboarding_package()["token"]).json()
    samples = {
        ColumnType.STRING: "x", ColumnType.INT: 7, ColumnType.LONG: 2**40, ColumnType.BOOL: True,
        ColumnType.DATETIME: "2026-11-28T08:00:00Z", ColumnType.DYNAMIC: {"k": [1, 2]},
    }
    events = []
    for seq, table in enumerate(TABLES.values(), start=1):
        row = {c.name: samples[c.type] for c in table.columns}
        row.update(table=table.name, DeviceId=dev["device_id"], ReportId=seq, ActionType=table.action_types[0])
        events.append(row)
    r = post_batch(server, dev["credential"], events)
    assert r.status_code == 200, r.text
    with server.client(server.admin_token()) as c:
        tl = c.get(f"/api/machines/{dev['device_id']}/timeline", params={"from": "2026-11-01T00:00:00Z"}).json()
    assert sorted(e["Table"] for e in tl["value"]) == sorted(TABLES)
    info = next(e for e in tl["value"] if e["Table"] == "DeviceInfo")
    assert orjson.loads(info["AdditionalFields"]) == {"k": [1, 2]}
