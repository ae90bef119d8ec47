"""A custom detection fires on its schedule (the scheduler's round at a fixed clock) over a real agent's telemetry,
raises its alert and runs its automatic action on that agent through the signed action path; the next round,
with nothing new, acts on nothing."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.e2e.agent_support import AgentProcess, wait_for
from tests.e2e.response_support import finished
from tests.support import VigilServer
from vigil.config import load_settings
from vigil.core.clock import FixedClock
from vigil.server.detection_scheduler import run_due_on
from vigil.store import db


def test_a_scheduled_custom_detection_collects_a_package_from_the_agent(
    sqlite_server: VigilServer, agent: AgentProcess, tmp_path: Path
) -> None:
    srv = sqlite_server
    marker = tmp_path / "cdmarker"
    shutil.copy("/bin/true", marker)
    with srv.client(srv.admin_token()) as c:
        def seen() -> bool:
            subprocess.run([str(marker)], check=True)
            r = c.post("/api/advancedqueries/run", json={
                "Query": "DeviceProcessEvents | where FileName == 'cdmarker' | project Timestamp, DeviceId"})
            return bool(r.json()["Results"])

        wait_for(seen, 90, f"the marker's process event (agent log: {agent.log})", interval=2)
        body = {
            "displayName": "marker ran", "isEnabled": True, "schedule": {"period": "1H"},
            "queryCondition": {"queryText": "DeviceProcessEvents | where FileName == 'cdmarker' "
                                            "| project Timestamp, DeviceId, ReportId, FolderPath"},
            "detectionAction": {"alertTemplate": {"title": "Marker ran", "severity": "Medium",
                                                  "category": "Execution"},
                                "responseActions": [{"@odata.type": "#microsoft.graph.security."
                                                                   "collectInvestigationPackageResponseAction"}]},
        }
        r = c.post("/api/security/rules/detectionRules", json=body)
        assert r.status_code == 201, r.text
        rule = r.json()
        assert rule["detectionAction"]["responseActions"] == ["collectInvestigationPackage"]

        settings = load_settings(srv.data_dir)
        engine = db.make_engine(settings.db_url)
        try:
            now = datetime.now(UTC)
            [run] = run_due_on(engine, settings, FixedClock(now))
            assert run.status == "completed" and run.new_hits >= 1, run
            [action] = run.actions  # one device, one package, however many rows hit
            assert action.error is None and action.device_id == agent.device_id, action
            assert run_due_on(engine, settings, FixedClock(now + timedelta(minutes=5))) == []  # not due yet
            [later] = run_due_on(engine, settings, FixedClock(now + timedelta(hours=1)))
            assert later.new_hits == 0 and later.actions == ()  # rows already raised act no more
        finally:
            engine.dispose()

        done = finished(c, str(action.machine_action_id), timeout=120)
        assert done["status"] == "Succeeded" and done["packageAvailable"], done
        assert done["requestor"] == f"detection:{rule['id']}"
        alerts = c.get("/api/alerts", params={"machineId": agent.device_id}).json()["value"]
        assert any(a["detectorId"] == rule["detectorId"] and a["title"] == "Marker ran" for a in alerts)
