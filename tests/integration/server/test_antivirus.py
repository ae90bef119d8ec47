"""Agents' antivirus detections become alerts, and their protection state shows in /api/machines (real server)."""

from __future__ import annotations

import json

from tests.support import VigilServer, enroll_raw, post_batch
from vigil.wire import HEARTBEAT_PATH

SHA = "ab" * 32


def _detection(device_id: str, seq: int, taken: str, **fields: object) -> dict[str, object]:
    return {"table": "DeviceEvents", "Timestamp": f"2026-11-28T09:0{seq}:00Z", "DeviceId": device_id,
            "DeviceName": "av-host", "ActionType": "AntivirusDetection", "ReportId": seq,
            "FileName": "dropper", "FolderPath": "/tmp/dropper", "SHA256": SHA, "InitiatingProcessId": 4242,
            "AdditionalFields": {"ThreatName": "Trojan:Linux/Dropper", "ThreatType": "malware",
                                 "Severity": "high", "DetectionSource": "Real-time protection",
                                 "Signature": SHA, "Member": None, "ActionTaken": taken, **fields}}


def test_detections_become_one_antivirus_alert_per_threat_and_device(sqlite_server: VigilServer) -> None:
    dev = enroll_raw(sqlite_server, sqlite_server.onboarding_package()["token"], "av-host").json()
    did = dev["device_id"]
    rows = [_detection(did, 1, "Blocked", Mode="block"), _detection(did, 2, "Blocked", Mode="block")]
    assert post_batch(sqlite_server, dev["credential"], rows).status_code == 200
    eicar = {"table": "DeviceEvents", "Timestamp": "2026-11-28T09:05:00Z", "DeviceId": did, "DeviceName": "av-host",
             "ActionType": "AntivirusDetection", "ReportId": 3,
             "AdditionalFields": {"ThreatName": "Virus:DOS/EICAR_Test_File", "ThreatType": "test", "Severity": "low",
                                  "DetectionSource": "Antivirus", "FolderPath": "/srv/eicar.com",
                                  "ActionTaken": "None", "ScanType": "Quick"}}
    assert post_batch(sqlite_server, dev["credential"], [eicar]).status_code == 200
    with sqlite_server.client(sqlite_server.admin_token()) as c:
        alerts = {a["title"]: a for a in c.get("/api/alerts").json()["value"]}
    assert set(alerts) == {"'Dropper' malware was prevented", "'EICAR_Test_File' test file was detected"}
    blocked = alerts["'Dropper' malware was prevented"]
    assert (blocked["detectionSource"], blocked["category"], blocked["severity"]) == ("VigilAv", "Malware", "High")
    assert blocked["eventCount"] == 2 and blocked["detectorId"] == "av:Trojan:Linux/Dropper"
    ev = blocked["evidence"][0]
    assert (ev["ThreatName"], ev["FolderPath"], ev["SHA256"], ev["ActionTaken"]) == (
        "Trojan:Linux/Dropper", "/tmp/dropper", SHA, "Blocked")
    test_file = alerts["'EICAR_Test_File' test file was detected"]
    assert test_file["severity"] == "Low" and test_file["evidence"][0]["FolderPath"] == "/srv/eicar.com"


def test_machines_show_the_protection_state_the_agent_reports(sqlite_server: VigilServer) -> None:
    dev = enroll_raw(sqlite_server, sqlite_server.onboarding_package()["token"], "av-host").json()
    with sqlite_server.client(sqlite_server.admin_token()) as c:
        [before] = c.get("/api/machines").json()["value"]
    assert before["avMode"] is None and before["avRealTimeProtection"] is None
    state = {"engineVersion": "0.9", "definitionsVersion": 1733500000, "definitionsCreated": "2026-12-06T10:00:00Z",
             "realTimeProtection": True, "mode": "passive", "lastScans": {"quick": "2026-12-07T08:00:00Z"}}
    beat = {"agent_version": "0.9",
            "sensors": {"antivirus": "active: passive mode", "antivirus_state": json.dumps(state)}}
    with sqlite_server.client(dev["credential"]) as c:
        assert c.post(HEARTBEAT_PATH, json=beat).status_code == 200
    with sqlite_server.client(sqlite_server.admin_token()) as c:
        m = c.get(f"/api/machines/{dev['device_id']}").json()
    assert (m["avMode"], m["avRealTimeProtection"], m["avSignatureVersion"], m["avEngineVersion"]) == (
        "Passive", "On", "1733500000", "0.9")
    assert (m["quickScanTime"], m["fullScanTime"], m["avSignatureUpdateTime"]) == (
        "2026-12-07T08:00:00Z", None, "2026-12-06T10:00:00Z")
