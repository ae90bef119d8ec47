"""Secure configuration on a real server (SQLite and PostgreSQL) and from a real agent: the agent's sensor runs the
checks on a fixture host and its rows reach DeviceTvmSecureConfigurationAssessment; Defender's
/api/configurationScore and SecureConfigurationsAssessmentByMachine, a device's assessments and score, a
ConfigurationChange recommendation whose remediation progress comes from the next assessment, late and bad rows,
and device-group scope in the API and in hunting."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.integration.agent.support import wait_for
from tests.integration.server.rbac_support import admin, groups_a_and_b, make_user, token_of
from tests.integration.tvm.test_server_tvm import _enroll
from tests.support import VigilServer, post_batch
from tests.unit.tvm.test_configuration import hardened
from vigil.agent.config import AgentConfig
from vigil.agent.enroll import enroll
from vigil.agent.runner import build_agent
from vigil.agent.sensors.registry import SensorRegistry
from vigil.agent.sensors.secure_configuration import SecureConfigurationSensor
from vigil.content.tvm_config import RootView
from vigil.core.rbac import Permission
from vigil.tvm.configuration import CHECKS, assess, secure_score
from vigil.tvm.configuration_report import CONFIGURATION_ACTION, report_fields


def _event(device_id: str, report: int, root: Path, when: str = "2026-12-01T09:00:00Z",
           fields: Any = None) -> dict[str, Any]:
    return {"table": "DeviceEvents", "Timestamp": when, "DeviceId": device_id, "ActionType": CONFIGURATION_ACTION,
            "ReportId": report, "AdditionalFields": fields if fields is not None else report_fields(
                assess(RootView(root)))}


def _lax(root: Path) -> Path:
    hardened(root)
    (root / "etc/ssh/sshd_config.d/10-vigil.conf").write_text("PermitRootLogin yes\n")
    (root / "etc/ufw/ufw.conf").write_text("ENABLED=no\n")
    return root


def test_assessments_scores_recommendations_and_scope(server: VigilServer, tmp_path: Path) -> None:
    good, lax = hardened(tmp_path / "good"), _lax(tmp_path / "lax")
    lax_score = secure_score(assess(RootView(lax)))
    with admin(server) as c:
        a = _enroll(server, c, "a-web-01")
        b = _enroll(server, c, "b-db-01")
        groups_a_and_b(c)
        assert post_batch(server, a["credential"], [_event(a["device_id"], 1, good)]).status_code == 200
        assert post_batch(server, b["credential"], [_event(b["device_id"], 1, lax)]).status_code == 200

        export = c.get("/api/machines/SecureConfigurationsAssessmentByMachine")
        assert export.status_code == 200, export.text
        rows = export.json()["value"]
        assert len(rows) == 2 * len(CHECKS)
        b_root = next(r for r in rows if r["DeviceId"] == b["device_id"] and r["ConfigurationId"] == "scid-vgl-1001")
        assert (b_root["IsApplicable"], b_root["IsCompliant"], b_root["ConfigurationImpact"]) == (True, False, 8)
        assert b_root["DeviceName"] == "b-db-01" and b_root["RbacGroupName"] == "Group B"
        assert b_root["RecommendationReference"] == "sca-_-scid-vgl-1001"
        assert "PermitRootLogin yes" in b_root["Evidence"] and b_root["Context"] == [b_root["Evidence"]]
        assert b_root["Timestamp"] == "2026-12-01T09:00:00Z"

        mine = c.get(f"/api/machines/{a['device_id']}/secureConfigurations").json()
        assert mine["secureScore"] == 100.0 and len(mine["value"]) == len(CHECKS)
        assert c.get(f"/api/machines/{b['device_id']}/secureConfigurations").json()["secureScore"] == lax_score
        assert c.get("/api/machines/nope/secureConfigurations").status_code == 404
        org = c.get("/api/configurationScore").json()
        assert org["score"] == round((100.0 + lax_score) / 2, 1) and org["devices"] == 2

        recs = {r["id"]: r for r in c.get("/api/recommendations").json()["value"]}
        rec = recs["sca-_-scid-vgl-1001"]
        assert rec["remediationType"] == "ConfigurationChange" and rec["exposedMachineIds"] == [b["device_id"]]
        assert rec["configScoreImpact"] == 8 and "PermitRootLogin no" in rec["remediation"]
        assert "sca-_-scid-vgl-3001" in recs and "sca-_-scid-vgl-1002" not in recs

        task = c.post("/api/remediationTasks", json={"recommendationId": "sca-_-scid-vgl-1001",
                                                     "dueOn": "2099-01-01", "priority": "High"})
        assert task.status_code == 201, task.text
        assert (task.json()["progress"], task.json()["category"]) == (0, "SecurityConfiguration")

        # a late row (assessed before the stored one) changes nothing; a bad row is refused, the batch stored
        (lax / "etc/ssh/sshd_config.d/10-vigil.conf").write_text("PermitRootLogin no\n")
        assert post_batch(server, b["credential"], [_event(b["device_id"], 2, lax, "2026-11-30T09:00:00Z")]
                          ).status_code == 200
        bad = report_fields(assess(RootView(lax)))
        bad["Assessments"][0]["IsCompliant"] = "yes"
        assert post_batch(server, b["credential"], [_event(b["device_id"], 3, lax, "2026-12-02T09:00:00Z", bad)]
                          ).status_code == 200
        assert c.get(f"/api/remediationTasks/{task.json()['id']}").json()["progress"] == 0
        # the fixed host's next assessment completes the request
        assert post_batch(server, b["credential"], [_event(b["device_id"], 4, lax, "2026-12-02T10:00:00Z")]
                          ).status_code == 200
        done = c.get(f"/api/remediationTasks/{task.json()['id']}").json()
        assert (done["progress"], done["status"]) == (100, "Completed")
        assert "sca-_-scid-vgl-1001" not in {r["id"] for r in c.get("/api/recommendations").json()["value"]}

        assert c.put("/api/roles/vuln-reader", json={"permissions": [Permission.VIEW_DATA_TVM.value,
                                                                     Permission.VIEW_DATA_SECOPS.value],
                                                     "userGroups": ["ug-readers"]}).status_code == 200
        assert c.post("/api/rbac/mode", json={"mode": "rbac"}).status_code == 200
        make_user(server, "alice", groups=("ug-a", "ug-readers"))
    with server.client(token_of(server, "alice")) as alice:
        seen = {r["DeviceId"] for r in alice.get("/api/machines/SecureConfigurationsAssessmentByMachine").json()[
            "value"]}
        assert seen == {a["device_id"]}
        assert alice.get(f"/api/machines/{b['device_id']}/secureConfigurations").status_code == 404
        assert alice.get("/api/configurationScore").json()["score"] == 100.0
        hunt = alice.post("/api/advancedqueries/run", json={
            "Query": "SELECT DeviceName, ConfigurationId, IsCompliant FROM DeviceTvmSecureConfigurationAssessment "
                     "WHERE ConfigurationId = 'scid-vgl-1001'"})
        assert hunt.status_code == 200, hunt.text
        assert hunt.json()["Results"] == [{"DeviceName": "a-web-01", "ConfigurationId": "scid-vgl-1001",
                                           "IsCompliant": True}]


def test_an_agents_checks_reach_the_server(sqlite_server: VigilServer, tmp_path: Path) -> None:
    root = _lax(tmp_path / "host")
    pkg = tmp_path / "pkg.json"
    pkg.write_text(json.dumps(sqlite_server.onboarding_package(expires="1h", uses=1)))
    identity = enroll(pkg, tmp_path / "agent")
    registry = SensorRegistry()
    registry.register(SecureConfigurationSensor.name, lambda ctx: SecureConfigurationSensor(ctx, root))
    config = AgentConfig(state_dir=tmp_path / "agent", heartbeat_seconds=0.5, batch_seconds=0.2,
                         secure_configuration_seconds=0.2)
    agent = build_agent(config, registry=registry)
    agent.start()
    with sqlite_server.client(sqlite_server.admin_token()) as c:
        def failing() -> set[str] | None:
            r = c.get(f"/api/machines/{identity.device_id}/secureConfigurations")
            if r.status_code != 200 or not r.json()["value"]:
                return None
            return {x["ConfigurationId"] for x in r.json()["value"] if x["IsApplicable"] and not x["IsCompliant"]}

        try:
            assert wait_for(lambda: failing() == {"scid-vgl-1001", "scid-vgl-3001"}, 30), failing()
            (root / "etc/ufw/ufw.conf").write_text("ENABLED=yes\n")  # the host is fixed: the next run says so
            assert wait_for(lambda: failing() == {"scid-vgl-1001"}, 30), failing()
        finally:
            agent.stop()
