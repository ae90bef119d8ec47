"""Ask an expert on a real server in RBAC mode: a Tier 1 analyst escalates an alert to CDOC Tier 3, whose outside
expert account (read-only, no device groups) sees the case's device and its evidence, nothing else, and answers."""

from __future__ import annotations

import re
from typing import Any

from tests.integration.air.mail_support import sinks
from tests.integration.server.rbac_support import admin, enroll_with_alert, groups_a_and_b, make_user, token_of
from tests.support import VigilServer
from vigil.core.rbac import Permission

TIER1 = [Permission.VIEW_DATA_SECOPS.value, Permission.ALERTS_INVESTIGATION.value]
EXPERT = [Permission.VIEW_DATA_SECOPS.value]


def test_escalation_round_trip_with_a_scoped_expert(sqlite_server: VigilServer) -> None:
    with sinks() as (smtp, hook):
        _round_trip(sqlite_server, smtp.server_address[1], hook.server_address[1])
        mails: list[dict[str, Any]] = smtp.received  # type: ignore[attr-defined]
        hooks: list[dict[str, Any]] = hook.received  # type: ignore[attr-defined]
    assert [h["event"] for h in hooks] == ["expert.ask", "expert.answer", "expert.notify"]
    assert "Is this test marker benign?" in hooks[0]["text"]
    # The question to the expert group's members, the answer to the analyst who asked.
    assert [m["to"] for m in mails] == [["mssp@mssp.example"], ["tina@corp.example"]]
    assert "Benign: the detection test marker." in mails[1]["data"]


def _round_trip(srv: VigilServer, smtp_port: int, hook_port: int) -> None:
    srv.stop()
    toml = srv.data_dir / "vigil.toml"
    text = re.sub(r'^expert_webhook_url = ""$', f'expert_webhook_url = "http://127.0.0.1:{hook_port}/hook"',
                  toml.read_text(), flags=re.M)
    text = re.sub(r'^smtp_host = ""$', 'smtp_host = "127.0.0.1"', text, flags=re.M)
    text = re.sub(r"^smtp_port = 25$", f"smtp_port = {smtp_port}", text, flags=re.M)
    toml.write_text(text)
    srv.start()
    a = enroll_with_alert(srv, "a-web-01.corp.test")
    b = enroll_with_alert(srv, "b-db-01.corp.test")
    with admin(srv) as c:
        groups_a_and_b(c)
        assert c.put("/api/roles/tier1", json={"permissions": TIER1, "userGroups": ["ug-tier1"]}).status_code == 200
        # The expert's role names no device group: only the case opens a device to them.
        assert c.put("/api/roles/cdoc", json={"permissions": EXPERT, "userGroups": ["CDOC Tier 3"]}
                     ).status_code == 200
        assert c.post("/api/rbac/mode", json={"mode": "rbac"}).status_code == 200
    make_user(srv, "tina", groups=("ug-a", "ug-tier1"), email="tina@corp.example")
    make_user(srv, "mssp", groups=("CDOC Tier 3",), email="mssp@mssp.example")
    tina, mssp = srv.client(token_of(srv, "tina")), srv.client(token_of(srv, "mssp"))
    with tina, mssp:
        alert = tina.get("/api/alerts", params={"machineId": a["device_id"]}).json()["value"][0]
        b_alert = None
        with admin(srv) as c:
            b_alert = c.get("/api/alerts", params={"machineId": b["device_id"]}).json()["value"][0]
        # Tina cannot escalate what she cannot see, nor to a group that does not exist.
        r = tina.post("/api/experts/cases", json={"sourceType": "Alert", "sourceId": b_alert["id"],
                                                   "question": "?", "expertGroup": "CDOC Tier 3"})
        assert r.status_code == 404
        r = tina.post("/api/experts/cases", json={"sourceType": "Alert", "sourceId": alert["id"],
                                                   "question": "?", "expertGroup": "Nobody"})
        assert r.status_code == 422 and "expertGroup" in r.text
        r = tina.post("/api/experts/cases", json={"sourceType": "Alert", "sourceId": alert["id"], "slaHours": 4,
                                                   "question": "Is this test marker benign?",
                                                   "expertGroup": "CDOC Tier 3"})
        assert r.status_code == 201, r.text
        case = r.json()
        assert case["status"] == "Open" and case["machineIds"] == [a["device_id"]] and not case["overdue"]

        # The expert sees no device of their own, but the case and its alert's evidence.
        assert mssp.get("/api/machines").json()["value"] == []
        assert mssp.get("/api/alerts").json()["value"] == []
        assert [x["id"] for x in mssp.get("/api/experts/cases").json()["value"]] == [case["id"]]
        seen = mssp.get(f"/api/experts/cases/{case['id']}").json()
        assert {x["machineId"] for x in seen["alerts"]} == {a["device_id"]}
        assert alert["id"] in {x["id"] for x in seen["alerts"]}
        assert mssp.get(f"/api/machines/{b['device_id']}").status_code == 404
        # Tina asks; only the expert group answers.
        r = tina.post(f"/api/experts/cases/{case['id']}/answer", json={"answer": "fine"})
        assert r.status_code == 403
        r = mssp.post(f"/api/experts/cases/{case['id']}/answer", json={
            "answer": "Benign: the detection test marker.",
            "huntingQueries": ["DeviceProcessEvents | where ProcessCommandLine has 'vigil-detection-test'"],
            "recommendedActions": ["Resolve the alert as a True positive: Security test"]})
        assert r.status_code == 200, r.text
        done = tina.get(f"/api/experts/cases/{case['id']}").json()
        assert done["status"] == "Answered" and done["answeredBy"].startswith("mssp")
        assert done["huntingQueries"] and done["recommendedActions"]
        r = mssp.post(f"/api/experts/cases/{case['id']}/answer", json={"answer": "again"})
        assert r.status_code == 422
        # A targeted attack notification for Group A reaches Tina's list; tina cannot raise one.
        with admin(srv) as c:
            group_a = next(g["id"] for g in c.get("/api/machinegroups").json()["value"] if g["name"] == "Group A")
        body = {"expertGroup": "CDOC Tier 3", "machineGroupId": group_a, "title": "Targeted attack on web tier",
                "details": "A known actor's tooling seen on a-web-01."}
        assert tina.post("/api/experts/targetedAttackNotifications", json=body).status_code == 403
        r = mssp.post("/api/experts/targetedAttackNotifications", json=body)
        assert r.status_code == 201, r.text
        kinds = {x["kind"] for x in tina.get("/api/experts/cases").json()["value"]}
        assert kinds == {"Question", "TargetedAttackNotification"}
    with admin(srv) as c:
        actions = {e["action"] for e in c.get("/api/audit").json()["value"]}
        assert {"expert.ask", "expert.answer", "expert.notify"} <= actions
