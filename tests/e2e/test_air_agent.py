"""AIR end to end on an enrolled agent: a payload dropped in a temp folder and started by a cron entry raises an
alert, the alert starts an investigation, and the device group's automation level decides what happens."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.agent_support import AgentProcess, require_root, wait_for
from tests.e2e.response_support import finished
from tests.support import VigilServer
from vigil.agent.actions.base import PERSISTENCE_ROOT_ENV

pytestmark = pytest.mark.root
GROUP = "Ungrouped devices (default)"


def _level(c: httpx.Client, level: str) -> None:
    assert c.put(f"/api/machinegroups/{GROUP}", json={"automationLevel": level}).status_code in (200, 201)


def _quarantine(inv: dict[str, Any], payload: Path) -> dict[str, Any]:
    return next(r for r in inv["remediations"] if r["kind"] == "QuarantineFile" and r["targetPath"] == str(payload))


def test_full_semi_and_no_automation_on_a_real_agent(
    sqlite_server: VigilServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_root()
    srv = sqlite_server
    srv.stop()
    toml = srv.data_dir / "vigil.toml"
    toml.write_text(toml.read_text().replace("air_alert_severities = []", 'air_alert_severities = ["Medium"]'))
    srv.start()
    root = tmp_path / "root"
    (root / "etc" / "cron.d").mkdir(parents=True)
    payload = tmp_path / "drop" / "payload"  # under /tmp: a world-writable temp folder
    payload.parent.mkdir()
    shutil.copy("/bin/sleep", payload)
    cron = root / "etc" / "cron.d" / "updater"
    cron_line = f"* * * * * root {payload} 300"
    cron.write_text(f"# installed by the dropper\n{cron_line}\n")
    monkeypatch.setenv(PERSISTENCE_ROOT_ENV, str(root))
    agent = AgentProcess.enroll(srv, tmp_path / "agent")
    agent.start()
    running: subprocess.Popen[bytes] | None = None
    try:
        with srv.client(srv.admin_token()) as c:
            def ready() -> bool:
                m = c.get(f"/api/machines/{agent.device_id}").json()
                return str(m.get("sensorHealth", {}).get("process", "")).split(":")[0] in ("active", "degraded")

            wait_for(ready, 60, f"the agent's process sensor (log: {agent.log})")
            running = subprocess.Popen([str(payload), "300"])
            # Full (the default group's level): the alert's investigation quarantines the payload by itself,
            # which kills it and takes its cron line out.
            alert = wait_for(lambda: next((a for a in c.get("/api/alerts", params={"machineId": agent.device_id})
                                           .json()["value"] if a["title"].startswith("Execution From")), None),
                             90, "the temp-folder alert")
            inv = wait_for(lambda: next(iter(c.get("/api/investigations", params={"alertId": alert["id"]})
                                             .json()["value"]), None), 60, "the alert's investigation")
            inv = c.get(f"/api/investigations/{inv['id']}").json()
            rem = _quarantine(inv, payload)
            assert rem["decision"] == "Run"
            done = finished(c, rem["machineActionId"])
            assert done["status"] == "Succeeded", done
            assert running.wait(10) == -9
            assert not payload.exists()
            assert cron_line not in cron.read_text()
            inv = wait_for(lambda: (lambda i: i if i["state"] == "SuccessfullyRemediated" else None)(
                c.get(f"/api/investigations/{inv['id']}").json()), 30, "the investigation remediated")
            assert c.get(f"/api/alerts/{alert['id']}").json()["status"] == "Resolved"
            # Undone, the host is as it was: the file and its cron line are back.
            r = c.post(f"/api/machineactions/{rem['machineActionId']}/undo", json={"Comment": "test: undo"})
            assert finished(c, r.json()["id"])["status"] == "Succeeded"
            assert payload.exists() and cron_line in cron.read_text()

            # Semi - any: the same finding waits in the action center; nothing happens until it is approved.
            _level(c, "SemiRemediation")
            running = subprocess.Popen([str(payload), "300"])
            wait_for(lambda: any(e.get("FolderPath") == str(payload) and e.get("ProcessId") == running.pid
                                 for e in c.get(f"/api/machines/{agent.device_id}/timeline",
                                                params={"table": "DeviceProcessEvents"}).json()["value"]),
                     60, "the second run in the timeline")
            inv = c.post(f"/api/machines/{agent.device_id}/startInvestigation", json={"Comment": "test"}).json()
            rem = _quarantine(inv, payload)
            assert rem["decision"] == "PendingApproval" and inv["state"] == "PendingApproval"
            assert running.poll() is None and payload.exists() and cron_line in cron.read_text()
            r = c.post("/api/machineactions/approve", json={"ActionIds": [rem["machineActionId"]],
                                                            "Comment": "test: approved"})
            assert r.status_code == 200, r.text
            assert finished(c, rem["machineActionId"])["status"] == "Succeeded"
            assert running.wait(10) == -9 and not payload.exists() and cron_line not in cron.read_text()
            r = c.post(f"/api/machineactions/{rem['machineActionId']}/undo", json={"Comment": "test: undo"})
            assert finished(c, r.json()["id"])["status"] == "Succeeded"
            assert payload.exists() and cron_line in cron.read_text()

            # No automated response: recommended only, nothing issued, the host untouched.
            _level(c, "NoRemediation")
            inv = c.post(f"/api/machines/{agent.device_id}/startInvestigation", json={}).json()
            assert inv["state"] == "TerminatedBySystem"
            assert {r["decision"] for r in inv["remediations"]} == {"NotRun"}
            assert all(r["machineActionId"] is None for r in inv["remediations"])
            assert payload.exists() and cron_line in cron.read_text()
    finally:
        if running is not None:
            running.kill()
            running.wait()
        agent.stop()
