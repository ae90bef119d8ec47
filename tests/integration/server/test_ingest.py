"""Telemetry ingest: good batches stored once and whole, bad ones refused whole with a reason."""

from __future__ import annotations

import gzip
import uuid

import orjson
import pytest

from tests.integration.server.test_enrollment import _count
from tests.support import VigilServer, enroll_raw, post_batch, process_event


@pytest.fixture
def device(server: VigilServer) -> dict[str, str]:
    pkg = server.onboarding_package(expires="1h")
    return dict(enroll_raw(server, pkg["token"]).json())


def test_batch_is_stored_and_resend_is_idempotent(server: VigilServer, device: dict[str, str]) -> None:
    events = [process_event(device["device_id"], i) for i in range(1, 101)]
    batch_id = uuid.uuid4().hex
    first = post_batch(server, device["credential"], events, batch_id)
    assert first.json() == {"batch_id": batch_id, "accepted": 100, "duplicate": False}
    again = post_batch(server, device["credential"], events, batch_id)
    assert again.json() == {"batch_id": batch_id, "accepted": 100, "duplicate": True}
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
    ],
)
def test_a_bad_event_rejects_the_whole_batch(server, device, mutate, status, field) -> None:  # type: ignore[no-untyped-def]
    events = [process_event(device["device_id"], i) for i in range(3)]
    mutate(events[1])
    r = post_batch(server, device["credential"], events)
    assert r.status_code == status, r.text
    assert r.json()["field"] == field
    assert field in r.json()["detail"]
    assert _count(server) == 0


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
