"""GET /api/asr/rules and /api/asr/rules/{id}/whatif on a real server, over telemetry an agent posted first."""

from __future__ import annotations

from tests.support import VigilServer, enroll_raw, post_batch, process_event


def test_rules_and_whatif_over_posted_telemetry(sqlite_server: VigilServer) -> None:
    srv = sqlite_server
    dev = dict(enroll_raw(srv, srv.onboarding_package()["token"], "asr-host").json())
    events = [
        process_event(dev["device_id"], 1, DeviceName="asr-host", FileName="x", FolderPath="/tmp/x",
                      ProcessCommandLine="/tmp/x -q"),
        process_event(dev["device_id"], 2, DeviceName="asr-host", FileName="ls", FolderPath="/usr/bin/ls",
                      ProcessCommandLine="ls /tmp"),
    ]
    assert post_batch(srv, dev["credential"], events).status_code == 200
    with srv.client(srv.admin_token()) as c:
        rules = c.get("/api/asr/rules").json()["value"]
        assert {r["name"] for r in rules} >= {"ExecFromTempOrRemovable", "PersistenceWrite"}
        r = c.get("/api/asr/rules/ExecFromTempOrRemovable/whatif", params={"days": 60})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["ruleId"] == "526f17ee-978f-439f-985b-be868343db39"
        assert [(h["deviceId"], h["process"], h["commandLine"], h["count"]) for h in body["hits"]] == [
            (dev["device_id"], "/tmp/x", "/tmp/x -q", 1)]
        bad = c.get("/api/asr/rules/ExecFromTempOrRemovable/whatif", params={"days": 0})
        assert bad.status_code == 422 and "days" in bad.text
        assert c.get("/api/asr/rules/NoSuchRule").status_code == 404
    with srv.client() as anonymous:
        assert anonymous.get("/api/asr/rules").status_code == 401
