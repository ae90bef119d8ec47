"""Responding from an alert's evidence and managing an incident in the portal: the action's target comes from the
stored alert, each action needs its own permission, every form its CSRF token, and a read-only user sees no button."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tests.e2e import portal_seed
from tests.integration.server.rbac_support import PASSWORD, admin, make_user
from tests.support import VigilServer

SHA = "ab" * 32
EVIDENCE = {"Timestamp": "2026-12-01T10:00:00Z", "ActionType": "ProcessCreated", "ProcessId": 4242,
            "ProcessCreationTime": "2026-12-01T09:59:58.120000Z", "FileName": "p7f3a", "FolderPath": "/tmp/p7f3a",
            "SHA256": SHA, "ProcessCommandLine": "/tmp/p7f3a --beacon"}


@contextmanager
def _portal(server: VigilServer, username: str, password: str) -> Iterator[httpx.Client]:
    with server.client() as c:
        c.get("/login")
        r = c.post("/login", data={"username": username, "password": password, "csrf": c.cookies["vigil_csrf"]})
        assert r.status_code in (200, 303), r.text
        yield c


def _seed(server: VigilServer) -> tuple[str, str, int]:
    [dev] = portal_seed.enroll(server, ["resp-01.corp.example"])
    portal_seed.alerts(server, [(dev["device_id"], "Beacon from /tmp", "High", 0)], evidence=EVIDENCE)
    with admin(server) as c:
        [a] = c.get("/api/alerts", params={"machineId": dev["device_id"]}).json()["value"]
    return dev["device_id"], a["id"], a["incidentId"]


def _actions(server: VigilServer, device: str) -> list[dict[str, object]]:
    with admin(server) as c:
        return list(c.get("/api/machineactions", params={"machineId": device}).json()["value"])


def test_response_actions_from_an_alerts_evidence(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    device, alert, _ = _seed(server)
    make_user(server, "ro")
    with _portal(server, "ro", PASSWORD) as c:
        html = c.get(f"/alerts/{alert}").text
        assert "Beacon from /tmp" in html and "Kill process" not in html and "Isolate device" not in html
        r = c.post(f"/alerts/{alert}/respond", data={"csrf": c.cookies["vigil_csrf"], "kind": "kill", "evidence": "0",
                                                      "comment": "x"})
        assert r.status_code == 403 and "Active remediation actions" in r.text
    with _portal(server, "admin", server.admin_password) as c:
        csrf = c.cookies["vigil_csrf"]
        html = c.get(f"/alerts/{alert}").text
        for label in ("Kill process", "Stop and quarantine file", "Isolate device", "Collect investigation package"):
            assert label in html, label
        assert c.post(f"/alerts/{alert}/respond", data={"csrf": "forged", "kind": "kill", "evidence": "0",
                                                         "comment": "x"}).status_code == 403
        no_comment = c.post(f"/alerts/{alert}/respond", data={"csrf": csrf, "kind": "quarantine", "evidence": "0"})
        assert no_comment.status_code == 422 and "comment is required" in no_comment.text
        out_of_range = c.post(f"/alerts/{alert}/respond", data={"csrf": csrf, "kind": "kill", "evidence": "7",
                                                                  "comment": "x"})
        assert out_of_range.status_code == 422 and "1 evidence rows" in out_of_range.text
        assert _actions(server, device) == []
        for kind in ("kill", "quarantine"):
            r = c.post(f"/alerts/{alert}/respond", data={"csrf": csrf, "kind": kind, "evidence": "0",
                                                          "comment": f"{kind} the beacon"})
            assert r.status_code == 303 and r.headers["location"] == "/actioncenter"
        r = c.post(f"/alerts/{alert}/respond", data={"csrf": csrf, "kind": "collect", "comment": "for forensics"})
        assert r.status_code == 303
        r = c.post(f"/alerts/{alert}/respond", data={"csrf": csrf, "kind": "isolate", "comment": "contain",
                                                      "require_approval": "1"})
        assert r.status_code == 303
        assert "KillProcess" in c.get("/actioncenter").text
    by_type = {a["type"]: a for a in _actions(server, device)}
    assert by_type["KillProcess"]["parameters"] == {"ProcessId": 4242,
                                                    "ProcessCreationTime": EVIDENCE["ProcessCreationTime"]}
    assert by_type["StopAndQuarantineFile"]["parameters"] == {"Sha256": SHA, "Path": "/tmp/p7f3a"}
    assert by_type["CollectInvestigationPackage"]["requestorComment"] == "for forensics"
    assert by_type["Isolate"]["approval"] == "PendingApproval"
    assert {a["requestor"] for a in by_type.values()} == {"admin"}


def test_an_evidence_row_without_a_process_start_offers_no_kill(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    [dev] = portal_seed.enroll(server, ["resp-02.corp.example"])
    portal_seed.alerts(server, [(dev["device_id"], "No start time", "Low", 0)],
                       evidence={"Timestamp": "2026-12-01T10:00:00Z", "ProcessId": 77, "FolderPath": "/tmp/x"})
    with admin(server) as c:
        [a] = c.get("/api/alerts", params={"machineId": dev["device_id"]}).json()["value"]
    with _portal(server, "admin", server.admin_password) as c:
        html = c.get(f"/alerts/{a['id']}").text
        assert "Stop and quarantine file" in html and "Kill process" not in html
        r = c.post(f"/alerts/{a['id']}/respond", data={"csrf": c.cookies["vigil_csrf"], "kind": "kill",
                                                       "evidence": "0", "comment": "x"})
        assert r.status_code == 422 and "row 0 lacks a process id and start time" in r.text


def test_assign_resolve_and_merge_an_incident(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    one, two = portal_seed.enroll(server, ["inc-01.corp.example", "inc-02.corp.example"])
    portal_seed.alerts(server, [(one["device_id"], "First", "High", 0), (two["device_id"], "Second", "Low", 3)])
    with admin(server) as c:
        ids = sorted({a["incidentId"] for a in c.get("/api/alerts").json()["value"]})
    assert len(ids) == 2
    target = ids[0]
    make_user(server, "ro")
    with _portal(server, "ro", PASSWORD) as c:
        assert 'id="manage-incident"' not in c.get(f"/incidents/{target}").text
        assert c.post(f"/incidents/{target}", data={"csrf": c.cookies["vigil_csrf"], "status": "Resolved"}
                      ).status_code == 403
    with _portal(server, "admin", server.admin_password) as c:
        csrf = c.cookies["vigil_csrf"]
        assert 'id="manage-incident"' in c.get(f"/incidents/{target}").text
        assert c.post(f"/incidents/{target}", data={"csrf": "stale", "status": "Resolved"}).status_code == 403
        bad = c.post(f"/incidents/{target}", data={"csrf": csrf, "status": "Closed"})
        assert bad.status_code == 422 and "status: use one of" in bad.text
        r = c.post(f"/incidents/{target}", data={"csrf": csrf, "status": "Resolved", "assign_to_me": "1",
                                                  "classification": "TruePositive"})
        assert r.status_code == 303
        page = c.get(f"/incidents/{target}").text
        assert "Resolved" in page and "admin" in page
        assert c.post(f"/incidents/{target}/merge", data={"csrf": csrf, "incidents": "#x"}).status_code == 422
        r = c.post(f"/incidents/{target}/merge", data={"csrf": csrf, "incidents": f"#{ids[1]}"})
        assert r.status_code == 303
    with admin(server) as c:
        inc = c.get(f"/api/incidents/{target}").json()
        assert (inc["status"], inc["assignedTo"], inc["classification"]) == ("Resolved", "admin", "TruePositive")
        audit = c.get("/api/audit", params={"action": "incident.update"}).json()["value"]
        assert audit and audit[0]["actor"] == "admin" and audit[0]["after"]["status"] == "Resolved"
        assert len(c.get(f"/api/incidents/{target}").json()["alerts"]) == 2
