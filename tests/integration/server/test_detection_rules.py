"""Custom detection rules over the API on a real server: Graph's detectionRules shape, RBAC, audit, bad input by
field, and a run that raises alerts in the queue (the schedule itself: tests/integration/store)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.integration.server.rbac_support import admin, make_user, token_of
from tests.support import VigilServer, enroll_raw, post_batch, process_event
from vigil.config import load_settings
from vigil.core.rbac import Permission
from vigil.store import audit, db

PATH = "/api/security/rules/detectionRules"
RULE: dict[str, Any] = {
    "displayName": "netcat listener",
    "queryCondition": {"queryText": "DeviceProcessEvents | where FileName == 'nc'"
                                    " | project Timestamp, DeviceId, ReportId, ProcessCommandLine"},
    "schedule": {"period": "1H"},
    "detectionAction": {"alertTemplate": {"title": "Netcat listener", "severity": "High", "category": "Execution",
                                          "mitreTechniques": ["T1059.004"]}},
}


def test_rules_are_made_changed_run_and_deleted_with_rbac_and_audit(server: VigilServer) -> None:
    dev = enroll_raw(server, server.onboarding_package()["token"], "web-01").json()
    recent = (datetime.now(UTC) - timedelta(minutes=10)).isoformat().replace("+00:00", "Z")  # in the 4 h lookback
    events = [process_event(dev["device_id"], i + 1, Timestamp=recent, FileName="nc", FolderPath="/usr/bin/nc",
                            ProcessCommandLine=f"nc -l {4000 + i}") for i in range(3)]
    assert post_batch(server, dev["credential"], events).status_code == 200
    with admin(server) as c:
        assert c.put("/api/roles/viewer", json={"permissions": [Permission.VIEW_DATA_SECOPS.value],
                                                "userGroups": ["ug-viewers"]}).status_code == 200
        assert c.post("/api/rbac/mode", json={"mode": "rbac"}).status_code == 200
    make_user(server, "val", groups=("ug-viewers",))

    with admin(server) as c:
        bad = c.post(PATH, json={**RULE, "schedule": {"period": "2H"}})
        assert bad.status_code == 422 and bad.json()["field"] == "schedule.period"
        bad = c.post(PATH, json={**RULE, "queryCondition": {"queryText": "DROP TABLE devices"}})
        assert bad.status_code == 422 and bad.json()["field"] == "queryCondition.queryText"
        bad = c.post(PATH, json={**RULE, "detectionAction": {**RULE["detectionAction"],
                                                             "responseActions": ["addIndicator"]}})
        assert bad.status_code == 422 and "not run automatically" in bad.json()["detail"]
        assert bad.json()["field"] == "detectionAction.responseActions[0]"
        made = c.post(PATH, json=RULE)
        assert made.status_code == 201, made.text
        rule = made.json()
        assert rule["isEnabled"] and rule["createdBy"] == "admin" and rule["lastRunDetails"]["status"] is None
        run = c.post(f"{PATH}/{rule['id']}/run").json()
        assert (run["status"], run["rows"], run["newHits"]) == ("completed", 3, 3)
        assert c.post(f"{PATH}/{rule['id']}/run").json()["newHits"] == 0  # the same reports raise nothing again
        raised = [a for a in c.get("/api/alerts").json()["value"] if a["detectorId"] == rule["detectorId"]]
        assert [(a["title"], a["severity"], a["mitreTechniques"], a["eventCount"], a["machineId"]) for a in raised] \
            == [("Netcat listener", "High", ["T1059.004"], 3, dev["device_id"])]
        changed = c.patch(f"{PATH}/{rule['id']}", json={"isEnabled": False, "schedule": {"period": "24H"}})
        assert changed.status_code == 200, changed.text
        assert (changed.json()["isEnabled"], changed.json()["schedule"]["period"]) == (False, "24H")
        assert changed.json()["displayName"] == "netcat listener"
        assert [r["newHits"] for r in c.get(f"{PATH}/{rule['id']}/runs").json()["value"]] == [0, 3]

    with server.client(token_of(server, "val")) as viewer:
        assert [r["id"] for r in viewer.get(PATH).json()["value"]] == [rule["id"]]
        assert viewer.post(PATH, json={**RULE, "displayName": "mine"}).status_code == 403
        assert viewer.patch(f"{PATH}/{rule['id']}", json={"isEnabled": True}).status_code == 403
        assert viewer.post(f"{PATH}/{rule['id']}/run").status_code == 403
        assert viewer.delete(f"{PATH}/{rule['id']}").status_code == 403

    with admin(server) as c:
        assert c.delete(f"{PATH}/{rule['id']}").status_code == 204
        assert c.get(f"{PATH}/{rule['id']}").status_code == 404
        logged = [e["action"] for e in c.get("/api/audit").json()["value"] if e["target_type"] == "custom_detection"]
    assert sorted(logged) == ["detection.create", "detection.delete", "detection.update"]


def test_the_cli_makes_changes_runs_and_deletes_a_rule_audited_as_the_os_user(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k not in ("VIGIL_DATABASE_URL", "VIGIL_DATA_DIR")}

    def vigil(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "vigil", *args, "--data-dir", str(data)], capture_output=True,
                              text=True, env=env, timeout=120, check=False)

    assert vigil("setup").returncode == 0
    query = RULE["queryCondition"]["queryText"]
    bad = vigil("detections", "create", "--name", "nc", "--title", "Netcat", "--severity", "High", "--query", query,
                "--period", "5H")
    assert bad.returncode == 2 and "schedule.period" in bad.stderr
    made = vigil("detections", "create", "--name", "nc", "--title", "Netcat", "--severity", "high", "--query", query,
                 "--period", "3H", "--technique", "T1059", "--output", "json")
    assert made.returncode == 0, made.stderr
    rule = json.loads(made.stdout)[0]
    assert rule["schedule"]["period"] == "3H" and rule["detectionAction"]["alertTemplate"]["severity"] == "High"
    changed = vigil("detections", "update", str(rule["id"]), "--severity", "Low", "--disable", "--output", "json")
    assert changed.returncode == 0, changed.stderr
    after = json.loads(changed.stdout)[0]
    assert (after["isEnabled"], after["detectionAction"]["alertTemplate"]["severity"]) == (False, "Low")
    ran = vigil("detections", "run", str(rule["id"]), "--output", "json")
    assert ran.returncode == 0 and json.loads(ran.stdout)["status"] == "completed"  # no telemetry: 0 rows
    assert vigil("detections", "delete", str(rule["id"])).returncode == 0
    assert vigil("detections", "show", str(rule["id"])).returncode == 3
    engine = db.make_engine(load_settings(data).db_url)
    try:
        with engine.connect() as conn:
            rows = [e for e, _ in audit.entries(conn) if e.target_type == "custom_detection"]
    finally:
        engine.dispose()
    assert sorted(e.action for e in rows) == ["detection.create", "detection.delete", "detection.update"]
    assert all(e.actor.startswith("cli:") for e in rows)
