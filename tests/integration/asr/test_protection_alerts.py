"""ASR decisions and indicator matches become alerts in the queue, and Warn overrides reach the audit log (real
server on SQLite, telemetry posted as an agent posts it)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support import VigilServer, enroll_raw, post_batch, process_event

TEMP_EXEC = "526f17ee-978f-439f-985b-be868343db39"
SERVER_SHELL = "674da5a4-c8d5-47c0-829a-3fb57477bd30"
BAD = "ab" * 32
GOOD = "cd" * 32


def _asr(device_id: str, seq: int, action: str, rule: str, name: str, mode: str, **cols: Any) -> dict[str, Any]:
    return {"table": "DeviceEvents", "Timestamp": f"2026-12-07T09:0{seq}:00Z", "DeviceId": device_id,
            "DeviceName": "asr-host", "ActionType": action, "ReportId": seq, "FileName": "payload",
            "FolderPath": "/dev/shm/payload", "ProcessId": 4000 + seq, "ProcessCommandLine": "/dev/shm/payload -x",
            "InitiatingProcessFileName": "bash", "InitiatingProcessFolderPath": "/usr/bin/bash",
            "AdditionalFields": {"RuleId": rule, "RuleName": name, "Mode": mode}, **cols}


def test_asr_block_warn_and_termination_raise_alerts_audit_does_not(sqlite_server: VigilServer) -> None:
    srv = sqlite_server
    dev = dict(enroll_raw(srv, srv.onboarding_package()["token"], "asr-host").json())
    did = dev["device_id"]
    rows = [
        _asr(did, 1, "AsrExecFromTempOrRemovableBlocked", TEMP_EXEC, "ExecFromTempOrRemovable", "Block"),
        _asr(did, 2, "AsrExecFromTempOrRemovableBlocked", TEMP_EXEC, "ExecFromTempOrRemovable", "Block"),
        _asr(did, 3, "AsrServerChildShellAudited", SERVER_SHELL, "ServerChildShell", "Audit",
             FileName="sh", FolderPath="/usr/bin/sh", InitiatingProcessFileName="nginx"),
    ]
    assert post_batch(srv, dev["credential"], rows).status_code == 200
    with srv.client(srv.admin_token()) as c:
        alerts = c.get("/api/alerts").json()["value"]
    assert [a["detectorId"] for a in alerts] == [TEMP_EXEC]  # Audit records, never alerts
    [a] = alerts
    assert a["machineId"] == did and a["detectionSource"] == "VigilAsr" and a["eventCount"] == 2
    assert a["mitreTechniques"] == ["T1204"] and a["category"] == "Execution"
    assert "blocked /dev/shm/payload" in a["title"]
    ev = a["evidence"][0]
    assert (ev["RuleId"], ev["Outcome"], ev["FolderPath"], ev["ProcessCommandLine"],
            ev["InitiatingProcessFolderPath"]) == (TEMP_EXEC, "Blocked", "/dev/shm/payload", "/dev/shm/payload -x",
                                                   "/usr/bin/bash")

    killed = _asr(did, 4, "AsrServerChildShellTerminated", SERVER_SHELL, "ServerChildShell", "Warn",
                  FileName="sh", FolderPath="/usr/bin/sh", InitiatingProcessFileName="nginx")
    assert post_batch(srv, dev["credential"], [killed]).status_code == 200
    with srv.client(srv.admin_token()) as c:
        by_rule = {a["detectorId"]: a for a in c.get("/api/alerts").json()["value"]}
    assert by_rule[SERVER_SHELL]["title"].endswith("terminated /usr/bin/sh")
    assert by_rule[SERVER_SHELL]["category"] == "Persistence"


def test_a_warn_override_the_device_reports_is_audited_on_the_server(sqlite_server: VigilServer) -> None:
    srv = sqlite_server
    dev = dict(enroll_raw(srv, srv.onboarding_package()["token"], "asr-host").json())
    row = _asr(dev["device_id"], 1, "AsrExecFromTempOrRemovableWarnOverridden", TEMP_EXEC,
               "ExecFromTempOrRemovable", "Warn")
    row["AdditionalFields"].update({"GrantedBy": "cli:alice@asr-host", "Path": "/dev/shm/payload",
                                    "Expires": "2026-12-08T09:01:00+00:00", "Reason": "vendor installer"})
    assert post_batch(srv, dev["credential"], [row]).status_code == 200
    with srv.client(srv.admin_token()) as c:
        entries = c.get("/api/audit", params={"action": "asr.warn.override"}).json()["value"]
        alerts = c.get("/api/alerts").json()["value"]
    [entry] = entries
    assert entry["actor"] == f"device:{dev['device_id']} (cli:alice@asr-host)"
    assert entry["target_id"] == TEMP_EXEC and entry["after"]["Path"] == "/dev/shm/payload"
    assert entry["reason"] == "vendor installer"
    assert alerts == []  # an override is an audited decision, not a detection


def _indicator(c: Any, kind: str, value: str, action: str, title: str, **extra: Any) -> int:
    r = c.post("/api/indicators", json={"indicatorType": kind, "indicatorValue": value, "action": action,
                                        "title": title, "severity": "High", **extra})
    assert r.status_code in (200, 201), r.text
    return int(r.json()["id"])


def test_server_matches_telemetry_against_indicators(sqlite_server: VigilServer) -> None:
    srv = sqlite_server
    with srv.client(srv.admin_token()) as c:
        bad = _indicator(c, "FileSha256", BAD, "Audit", "known dropper", generateAlert=True)
        _indicator(c, "FileSha256", GOOD, "Block", "silent block")  # no generateAlert: enforced, not alerted
        ip = _indicator(c, "IpAddress", "203.0.113.9", "AlertAndBlock", "c2 address")
        _indicator(c, "DomainName", "evil.example", "Block", "c2 domain", generateAlert=True)
        _indicator(c, "DomainName", "cdn.evil.example", "Allowed", "allowed mirror")
        soon = datetime.now(UTC) + timedelta(seconds=2)
        _indicator(c, "IpAddress", "198.51.100.7", "Block", "expired", generateAlert=True,
                   expirationTime=soon.isoformat())
    dev = dict(enroll_raw(srv, srv.onboarding_package()["token"], "ioc-host").json())
    did = dev["device_id"]
    time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.2)  # the last indicator has expired

    def net(seq: int, ip_: str, url: str | None = None) -> dict[str, Any]:
        return {"table": "DeviceNetworkEvents", "Timestamp": f"2026-12-07T09:1{seq}:00Z", "DeviceId": did,
                "DeviceName": "ioc-host", "ActionType": "ConnectionSuccess", "ReportId": 10 + seq,
                "RemoteIP": ip_, "RemotePort": 443, "RemoteUrl": url, "InitiatingProcessFileName": "curl"}

    rows = [process_event(did, 1, SHA256=BAD, FolderPath="/tmp/dropper", FileName="dropper"),
            process_event(did, 2, SHA256=GOOD),
            net(1, "203.0.113.9"), net(2, "192.0.2.1", "a.evil.example"), net(3, "192.0.2.2", "cdn.evil.example"),
            net(4, "198.51.100.7")]
    assert post_batch(srv, dev["credential"], rows).status_code == 200
    with srv.client(srv.admin_token()) as c:
        alerts = {a["title"]: a for a in c.get("/api/alerts").json()["value"] if a["detectionSource"] != "Sigma"}
    assert set(alerts) == {"known dropper", "c2 address", "c2 domain"}  # not the silent, allowed or expired ones
    dropper = alerts["known dropper"]
    assert (dropper["detectorId"], dropper["detectionSource"], dropper["severity"]) == (
        f"indicator:{bad}", "CustomerTI", "High")
    assert dropper["evidence"][0]["MatchedOn"] == "SHA256" and dropper["evidence"][0]["FolderPath"] == "/tmp/dropper"
    assert alerts["c2 address"]["detectorId"] == f"indicator:{ip}"  # AlertAndBlock: Block with an alert
    domain = alerts["c2 domain"]
    assert domain["eventCount"] == 1 and domain["evidence"][0]["RemoteUrl"] == "a.evil.example"
