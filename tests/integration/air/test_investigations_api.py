"""Automated investigations on a real server: an alert starts one, the group's automation level decides, the
action center holds what waits, an Allowed indicator clears the file, and a remediated alert resolves itself."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.e2e.agent_support import wait_for
from tests.support import VigilServer, enroll_raw, post_batch, process_event

DROPPER_SHA = hashlib.sha256(b"dropper").hexdigest()
DEFAULT_GROUP = "Ungrouped devices (default)"


def _events(device_id: str, base: int) -> list[dict[str, Any]]:
    # Recent, so that a device investigated by hand (the last day) sees them too.
    at = (datetime.now(UTC) - timedelta(minutes=2)).isoformat().replace("+00:00", "Z")
    return [
        process_event(device_id, base, Timestamp=at, FileName="cron", FolderPath="/usr/sbin/cron", ProcessId=base,
                      ProcessCommandLine="/usr/sbin/cron -f", InitiatingProcessId=1, ProcessCreationTime=at,
                      InitiatingProcessFileName="systemd"),
        process_event(device_id, base + 1, Timestamp=at, FileName="dropper", FolderPath="/tmp/dropper",
                      ProcessId=base + 1,
                      ProcessCommandLine="/tmp/dropper --beacon", InitiatingProcessId=base, SHA256=DROPPER_SHA,
                      InitiatingProcessFileName="cron", ProcessCreationTime=at, AccountName="root"),
        {"table": "DeviceNetworkEvents", "Timestamp": at, "DeviceId": device_id, "ActionType": "ConnectionSuccess",
         "ReportId": base + 2, "RemoteIP": "203.0.113.7", "RemotePort": 443, "InitiatingProcessId": base + 1,
         "InitiatingProcessCreationTime": at},
    ]


def _level(c: httpx.Client, level: str) -> None:
    r = c.put(f"/api/machinegroups/{DEFAULT_GROUP}", json={"automationLevel": level})
    assert r.status_code in (200, 201), r.text


def _file(inv: dict[str, Any]) -> dict[str, Any]:
    key = next(e["key"] for e in inv["entities"] if e["kind"] == "File" and e["facts"]["path"] == "/tmp/dropper")
    return next(v for v in inv["verdicts"] if v["entityKey"] == key)


def test_alert_to_investigation_under_each_level(sqlite_server: VigilServer) -> None:
    srv = sqlite_server
    srv.stop()
    toml = srv.data_dir / "vigil.toml"
    toml.write_text(toml.read_text().replace("air_alert_severities = []", 'air_alert_severities = ["Medium", "High"]'))
    srv.start()
    dev = dict(enroll_raw(srv, srv.onboarding_package()["token"], "air-host").json())
    device_id, cred = dev["device_id"], dev["credential"]
    assert post_batch(srv, cred, _events(device_id, 100)).status_code == 200
    with srv.client(srv.admin_token()) as c:
        alert = wait_for(lambda: next(iter(c.get("/api/alerts", params={"machineId": device_id}).json()["value"]),
                                      None), 30, "the temp-folder alert")
        assert alert["title"] == "Execution From a World-Writable Temporary Folder"
        found = wait_for(lambda: c.get("/api/investigations", params={"alertId": alert["id"]}).json()["value"], 30,
                         "the investigation the alert starts")
        inv = c.get(f"/api/investigations/{found[0]['id']}").json()
        # Default group: Full - the quarantine is signed at once, no approval.
        assert inv["triggeredBy"] == "Alert" and inv["requestedBy"] == "AIR"
        assert inv["automationLevel"] == "FullRemediation"
        verdict = _file(inv)
        assert verdict["verdict"] == "Malicious"
        assert {r["source"] for r in verdict["reasons"]} >= {"Sigma", "Location", "Persistence"}
        kinds = {e["kind"] for e in inv["entities"]}
        assert {"Process", "File", "Persistence", "Ip", "User"} <= kinds
        [rem] = inv["remediations"]
        assert (rem["kind"], rem["targetPath"], rem["decision"]) == ("QuarantineFile", "/tmp/dropper", "Run")
        action = c.get(f"/api/machineactions/{rem['machineActionId']}").json()
        assert action["type"] == "StopAndQuarantineFile" and action["approval"] == "NotRequired"
        assert action["requestor"] == "AIR" and inv["state"] == "Running"
        assert c.get(f"/api/alerts/{alert['id']}").json()["investigationState"] == "Running"

        # The agent reports success: the investigation is Remediated and its alert resolves itself.
        with srv.client(cred) as agent:
            r = agent.post(f"/agent/v1/actions/{action['id']}/result", json={"status": "Succeeded"})
            assert r.status_code == 200, r.text
        inv = c.get(f"/api/investigations/{inv['id']}").json()
        assert inv["state"] == "SuccessfullyRemediated" and inv["endTime"]
        assert c.get(f"/api/alerts/{alert['id']}").json()["status"] == "Resolved"

        # Semi - any: the same finding waits in the action center until approved there.
        _level(c, "SemiRemediation")
        r = c.post(f"/api/machines/{device_id}/startInvestigation", json={"Comment": "again"})
        assert r.status_code == 201, r.text
        inv = r.json()
        assert inv["state"] == "PendingApproval" and inv["triggeredBy"] == "Device"
        [rem] = inv["remediations"]
        assert rem["decision"] == "PendingApproval" and rem["approval"] == "PendingApproval"
        pending = c.get("/api/machineactions", params={"pendingApproval": True}).json()["value"]
        assert rem["machineActionId"] in {a["id"] for a in pending}
        r = c.post("/api/machineactions/approve", json={"ActionIds": [rem["machineActionId"]], "Comment": "ok"})
        assert r.status_code == 200, r.text
        inv = c.get(f"/api/investigations/{inv['id']}").json()
        assert inv["state"] == "Running" and inv["remediations"][0]["outcome"] == "Running"

        # No automated response: recommended, nothing issued.
        _level(c, "NoRemediation")
        before = len(c.get("/api/machineactions").json()["value"])
        inv = c.post(f"/api/machines/{device_id}/startInvestigation", json={}).json()
        assert inv["state"] == "TerminatedBySystem"
        assert [r["decision"] for r in inv["remediations"]] == ["NotRun"]
        assert len(c.get("/api/machineactions").json()["value"]) == before

        # An Allowed indicator wins over the Sigma hit, the folder and the cron parent.
        r = c.post("/api/indicators", json={"indicatorValue": DROPPER_SHA, "indicatorType": "FileSha256",
                                            "action": "Allowed", "title": "our beacon"})
        assert r.status_code == 201, r.text
        inv = c.post(f"/api/machines/{device_id}/startInvestigation", json={}).json()
        assert _file(inv)["verdict"] == "NoThreatsFound" and "Allowed" in _file(inv)["reasons"][0]["text"]
        assert inv["state"] == "NoThreatsFound" and inv["remediations"] == []

        listed = c.get("/api/investigations", params={"state": "NoThreatsFound"}).json()["value"]
        assert [i["id"] for i in listed] == [inv["id"]]
        assert c.get("/api/investigations", params={"state": "Bogus"}).status_code == 422
        assert c.get("/api/investigations/999999").status_code == 404
        assert c.get("/api/investigations/abc").status_code == 404
        assert c.post("/api/machines/nope/startInvestigation", json={}).status_code == 404
        audit = c.get("/api/audit", params={"action": "investigation.start"}).json()
        assert audit
    with srv.client() as anonymous:
        assert anonymous.get("/api/investigations").status_code == 401


def test_expansion_to_ten_devices_waits_for_approval(sqlite_server: VigilServer) -> None:
    srv = sqlite_server
    origin = dict(enroll_raw(srv, srv.onboarding_package()["token"], "origin").json())
    assert post_batch(srv, origin["credential"], _events(origin["device_id"], 100)).status_code == 200
    others = []
    for i in range(10):
        dev = dict(enroll_raw(srv, srv.onboarding_package()["token"], f"peer-{i}").json())
        seen = process_event(dev["device_id"], 1, FileName="helper", FolderPath="/opt/helper/helper",
                             SHA256=DROPPER_SHA, ProcessCommandLine="/opt/helper/helper")
        assert post_batch(srv, dev["credential"], [seen]).status_code == 200
        others.append(dev["device_id"])
    with srv.client(srv.admin_token()) as c:
        alert = wait_for(lambda: next(iter(c.get("/api/alerts", params={"machineId": origin["device_id"]})
                                           .json()["value"]), None), 30, "the origin's alert")
        r = c.post(f"/api/alerts/{alert['id']}/startInvestigation", json={})
        assert r.status_code == 201, r.text
        inv = r.json()
        assert inv["expansion"]["state"] == "PendingApproval" and inv["expansion"]["needsApproval"]
        assert sorted(inv["expansion"]["devices"]) == sorted(others)
        assert f"sha256:{DROPPER_SHA}" in inv["expansion"]["devices"][others[0]]
        assert c.get("/api/investigations", params={"machineId": others[0]}).json()["value"] == []
        r = c.post(f"/api/investigations/{inv['id']}/approveExpansion", json={"Comment": "go"})
        assert r.status_code == 200, r.text
        assert r.json()["expansion"]["state"] == "Approved"
        children = [i for i in c.get("/api/investigations").json()["value"]
                    if i["parentInvestigationId"] == inv["id"]]
        assert sorted(i["machineId"] for i in children) == sorted(others)
        assert {i["triggeredBy"] for i in children} == {"Expansion"}
        again = c.post(f"/api/investigations/{inv['id']}/approveExpansion", json={})
        assert again.status_code == 422
