"""On a real server: an implant that wrote a cron drop-in, a systemd unit and a key, and whose peer an account
signed in from, gets one remediation per entry — each a signed machine action, the risky ones held for approval
even under Full, the quarantine told to keep the files removed on their own — and each is undone by id."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.e2e.agent_support import wait_for
from tests.support import VigilServer, enroll_raw, post_batch, process_event

IMPLANT_SHA = hashlib.sha256(b"implant").hexdigest()
PEER = "203.0.113.66"


def _events(device_id: str) -> list[dict[str, Any]]:
    at = (datetime.now(UTC) - timedelta(minutes=2)).isoformat().replace("+00:00", "Z")
    pid = 4100

    def wrote(seq: int, path: str) -> dict[str, Any]:
        return {"table": "DeviceFileEvents", "Timestamp": at, "DeviceId": device_id, "ActionType": "FileCreated",
                "ReportId": seq, "FolderPath": path, "FileName": path.rsplit("/", 1)[-1], "InitiatingProcessId": pid,
                "InitiatingProcessCreationTime": at, "InitiatingProcessFolderPath": "/tmp/implant"}

    return [
        process_event(device_id, 1, Timestamp=at, FileName="implant", FolderPath="/tmp/implant", ProcessId=pid,
                      ProcessCommandLine="/tmp/implant --install", InitiatingProcessId=1, SHA256=IMPLANT_SHA,
                      InitiatingProcessFileName="bash", ProcessCreationTime=at, AccountName="root"),
        wrote(2, "/etc/cron.d/implant"), wrote(3, "/etc/systemd/system/implant.service"),
        wrote(4, "/root/.ssh/authorized_keys"),
        {"table": "DeviceNetworkEvents", "Timestamp": at, "DeviceId": device_id, "ActionType": "ConnectionSuccess",
         "ReportId": 5, "RemoteIP": PEER, "RemotePort": 443, "InitiatingProcessId": pid,
         "InitiatingProcessCreationTime": at},
        {"table": "DeviceLogonEvents", "Timestamp": at, "DeviceId": device_id, "ActionType": "LogonSuccess",
         "ReportId": 6, "AccountName": "svc", "RemoteIP": PEER, "LogonType": "Network"},
    ]


def test_each_persistence_entry_and_the_account_get_their_own_undoable_action(sqlite_server: VigilServer) -> None:
    srv = sqlite_server
    dev = dict(enroll_raw(srv, srv.onboarding_package()["token"], "implant-host").json())
    device_id, cred = dev["device_id"], dev["credential"]
    with srv.client(srv.admin_token()) as c:
        r = c.post("/api/indicators", json={"indicatorValue": PEER, "indicatorType": "IpAddress", "action": "Block",
                                            "title": "implant C2"})
        assert r.status_code == 201, r.text
        assert post_batch(srv, cred, _events(device_id)).status_code == 200
        alert = wait_for(lambda: next((a for a in c.get("/api/alerts", params={"machineId": device_id}).json()[
            "value"] if a["title"].startswith("Execution From")), None), 30, "the temp-folder alert")
        r = c.post(f"/api/alerts/{alert['id']}/startInvestigation", json={"Comment": "implant"})
        assert r.status_code == 201, r.text
        inv = r.json()
        verdicts = {v["entityKey"]: v for v in inv["verdicts"]}
        cron = verdicts[f"persistence:{device_id}:/etc/cron.d/implant"]
        assert cron["verdict"] == "Malicious"
        assert "written by /tmp/implant, which is Malicious" in [x["text"] for x in cron["reasons"]]
        assert verdicts[f"user:{device_id}:svc"]["verdict"] == "Suspicious"

        rems = {(x["kind"], x["targetPath"]): x for x in inv["remediations"]}
        quarantine = rems[("QuarantineFile", "/tmp/implant")]
        assert quarantine["parameters"]["KeepPersistence"] == [
            "/etc/cron.d/implant", "/etc/systemd/system/implant.service", "/root/.ssh/authorized_keys"]
        dropin = rems[("RemovePersistenceEntry", "/etc/cron.d/implant")]
        unit = rems[("StopAndDisableService", "/etc/systemd/system/implant.service")]
        keys = rems[("RemovePersistenceEntry", "/root/.ssh/authorized_keys")]
        account = rems[("DisableLocalUser", "/etc/shadow")]
        # Full (the default group's level): the drop-in and the unit go at once; the shared key file removed whole
        # and the suspicious account wait for an analyst.
        assert (dropin["decision"], unit["decision"]) == ("Run", "Run")
        assert (keys["decision"], account["decision"]) == ("PendingApproval", "PendingApproval")
        actions = {x["kind"]: c.get(f"/api/machineactions/{x['machineActionId']}").json()
                   for x in (quarantine, dropin, unit, account)}
        assert actions["QuarantineFile"]["parameters"]["KeepPersistence"][0] == "/etc/cron.d/implant"
        assert actions["RemovePersistenceEntry"]["type"] == "RemovePersistenceEntry"
        assert actions["StopAndDisableService"]["parameters"] == {"Unit": "implant.service"}
        assert actions["DisableLocalUser"]["parameters"] == {"AccountName": "svc"}
        assert actions["DisableLocalUser"]["approval"] == "PendingApproval"
        assert inv["state"] == "Running"  # what runs comes first; what waits shows as it is
        assert {x["outcome"] for x in (keys, account)} == {"PendingApproval"}

        r = c.post("/api/machineactions/approve", json={"ActionIds": [account["machineActionId"]],
                                                        "Comment": "svc signed in from the C2"})
        assert r.status_code == 200, r.text
        # The agent carries them out; then each is undone by an action that names it.
        with srv.client(cred) as agent:
            for x in (dropin, unit, account):
                r = agent.post(f"/agent/v1/actions/{x['machineActionId']}/result", json={"status": "Succeeded"})
                assert r.status_code == 200, r.text
        for x, undo in ((dropin, "RestorePersistenceEntry"), (unit, "StartAndEnableService"),
                        (account, "EnableLocalUser")):
            r = c.post(f"/api/machineactions/{x['machineActionId']}/undo", json={"Comment": "test: undo"})
            assert r.status_code in (200, 201), r.text
            assert (r.json()["type"], r.json()["parameters"]) == (undo, {"UndoOf": x["machineActionId"]})
