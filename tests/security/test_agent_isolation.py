"""Attack: an enrolled device reaches for another device's commands: polls for them, reports a result for one,
uploads an artifact to one. Each is refused and the other device's action is left as it was."""

from __future__ import annotations

from tests.support import VigilServer, enroll_raw
from vigil.wire import ACTION_ARTIFACT_PATH, ACTION_RESULT_PATH, ACTIONS_POLL_PATH


def test_a_device_cannot_take_report_or_upload_for_another_devices_action(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    pkg = server.onboarding_package(expires="1h", uses=2)
    a = enroll_raw(server, pkg["token"], "victim").json()
    b = enroll_raw(server, pkg["token"], "attacker").json()
    with server.client(server.admin_token()) as c:
        r = c.post(f"/api/machines/{a['device_id']}/collectInvestigationPackage", json={"Comment": "isolation test"})
        assert r.status_code == 201, r.text
        action_id = r.json()["id"]
        before = c.get(f"/api/machineactions/{action_id}").json()["status"]
    as_b = {"Authorization": f"Bearer {b['credential']}"}
    with server.client() as c:
        polled = c.post(ACTIONS_POLL_PATH, params={"wait": 0}, headers=as_b)
        assert polled.status_code == 200 and polled.json()["commands"] == [], polled.text
        result = {"status": "Succeeded", "message": "done, honestly"}
        r = c.post(ACTION_RESULT_PATH.format(action_id=action_id), json=result, headers=as_b)
        assert r.status_code == 404 and action_id in r.json()["detail"], r.text
        r = c.post(ACTION_ARTIFACT_PATH.format(action_id=action_id), content=b"forged package", headers=as_b)
        assert r.status_code == 404, r.text
    with server.client(server.admin_token()) as c:
        after = c.get(f"/api/machineactions/{action_id}").json()
    assert after["status"] == before and after["status"] != "Succeeded", after
    # The device it was meant for still gets it.
    with server.client() as c:
        polled = c.post(ACTIONS_POLL_PATH, params={"wait": 0}, headers={"Authorization": f"Bearer {a['credential']}"})
    assert [cmd["command"]["action_id"] for cmd in polled.json()["commands"]] == [action_id], polled.text
