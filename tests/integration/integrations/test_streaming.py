"""Streaming export end to end: a real server, a CEF syslog receiver and a webhook on loopback, both going down,
dropping a connection mid-stream, answering errors, and the Vigil server restarting. Every record arrives; the
only repeats carry the same record id and content."""

from __future__ import annotations

import time
from typing import Any

from tests.integration.integrations.receivers import HttpReceiver, SyslogReceiver
from tests.support import VigilServer, enroll_raw, post_batch, process_event

BATCH = 40


def _wait(cond: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _status(server: VigilServer, token: str) -> dict[str, Any]:
    with server.client(token) as c:
        return {d["name"]: d for d in c.get("/api/streaming/destinations").json()["value"]}


def test_every_record_arrives_across_receiver_downtime_errors_and_a_server_restart(
        sqlite_server: VigilServer) -> None:
    server = sqlite_server
    admin = server.admin_token()
    syslog, hook = SyslogReceiver(), HttpReceiver()
    syslog.start()
    hook.start()
    with server.client(admin) as c:
        bad = c.post("/api/streaming/destinations", json={"name": "x", "type": "syslog", "tables": ["Nope"],
                                                          "settings": {"host": "127.0.0.1"}})
        assert bad.status_code == 422 and bad.json()["field"] == "tables[0]"
        bad = c.post("/api/streaming/destinations", json={"name": "x", "type": "webhook", "settings": {"url": "ftp:x"},
                                                          "tables": ["DeviceProcessEvents"]})
        assert bad.status_code == 422 and bad.json()["field"] == "settings.url"
        r = c.post("/api/streaming/destinations", json={
            "name": "siem-cef", "type": "syslog", "tables": ["DeviceProcessEvents"],
            "settings": {"host": "127.0.0.1", "port": syslog.port, "transport": "tcp", "format": "cef"}})
        assert r.status_code == 201, r.text
        r = c.post("/api/streaming/destinations", json={
            "name": "hook", "type": "webhook", "tables": ["DeviceProcessEvents"],
            "settings": {"url": hook.url, "token": "s3cret-hook-token"}})
        assert r.status_code == 201 and r.json()["settings"]["token"] == "********"
    dev = enroll_raw(server, server.onboarding_package()["token"], "web-01").json()
    seq = 0

    def send(batches: int) -> None:
        nonlocal seq
        for _ in range(batches):
            events = [process_event(dev["device_id"], seq + i) for i in range(BATCH)]
            seq += BATCH
            assert post_batch(server, dev["credential"], events).status_code == 200

    send(5)
    _wait(lambda: syslog.records.unique() == seq and hook.records.unique() == seq)
    assert hook.auth == "Bearer s3cret-hook-token"

    # Down: the syslog receiver refuses connections, the webhook answers 503; records queue, none is dropped.
    syslog.stop()
    hook.fail_with = 503
    send(5)
    _wait(lambda: all(d["lastError"] and d["lag"] > 0 for d in _status(server, admin).values()))
    state = _status(server, admin)
    assert "503" in state["hook"]["lastError"] and state["siem-cef"]["recordsFailed"] > 0

    # The Vigil server restarts while both are down; the cursors are in the database.
    server.stop()
    server.start()
    send(3)
    # Back, but the syslog receiver drops its first connection mid-stream (after 7 frames, with a reset).
    syslog.drop_after = 7
    syslog.start()
    hook.fail_with = None
    _wait(lambda: syslog.records.unique() == seq and hook.records.unique() == seq, timeout=120)
    send(2)
    _wait(lambda: syslog.records.unique() == seq and hook.records.unique() == seq)

    for receiver in (syslog.records, hook.records):
        assert receiver.conflicts == []  # a repeated id always carried the same record
    # Each event exactly once after dedup by id: the command lines are the posted ones, no more, no fewer.
    lines = sorted(int(b.split(b"cs1=/bin/true ")[1].split(b" ")[0]) for b in syslog.records.bodies.values())
    assert lines == list(range(seq))
    assert sorted(r["properties"]["ReportId"] for r in hook.records.bodies.values()) == list(range(seq))
    record = next(iter(hook.records.bodies.values()))
    assert record["category"] == "AdvancedHunting-DeviceProcessEvents" and record["operationName"] == "Publish"
    assert syslog.records.copies.total() > seq  # the drop mid-stream really made it resend
    final = _status(server, admin)
    assert all(d["lag"] == 0 and d["attempts"] == 0 for d in final.values())
    syslog.stop()
    hook.stop()
