"""Tags from the agent's config file reach the device, its machineTags and its device group."""

from __future__ import annotations

from tests.support import VigilServer, enroll_raw, post_batch


def _info(device_id: str, seq: int, tags: object) -> dict[str, object]:
    return {"table": "DeviceInfo", "Timestamp": f"2026-11-28T09:00:0{seq}Z", "DeviceId": device_id,
            "DeviceName": "web-01", "ActionType": "DeviceInfo", "ReportId": seq, "OSPlatform": "Linux",
            "DeviceTags": tags}


def test_agent_tags_join_analyst_tags_and_drive_group_membership(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    dev = enroll_raw(server, server.onboarding_package()["token"], "web-01").json()
    did = dev["device_id"]
    with server.client(server.admin_token()) as c:
        r = c.put("/api/machinegroups/Pilot", json={"rules": [{"property": "tag", "operator": "equals",
                                                                 "value": "ring-pilot"}]})
        assert r.status_code in (200, 201), r.text
        assert c.post(f"/api/machines/{did}/tags", json={"Value": "owner-web", "Action": "Add"}).status_code == 200
    bad_tag = "x" * 200
    tags = ["ring-pilot", " web ", bad_tag, 7]
    assert post_batch(server, dev["credential"], [_info(did, 1, tags)]).status_code == 200
    with server.client(server.admin_token()) as c:
        m = c.get(f"/api/machines/{did}").json()
        assert m["machineTags"] == ["owner-web", "ring-pilot", "web"]
        assert m["rbacGroupName"] == "Pilot"
    # The ring tag leaves the agent's config: that is the device's word, so it waits for an administrator.
    assert post_batch(server, dev["credential"], [_info(did, 2, ["web"])]).status_code == 200
    with server.client(server.admin_token()) as c:
        m = c.get(f"/api/machines/{did}").json()
        assert (m["machineTags"], m["rbacGroupName"]) == (["owner-web", "ring-pilot", "web"], "Pilot")
        ch = c.get(f"/api/machines/{did}/identityChanges").json()["value"][0]
        assert c.post(f"/api/machines/{did}/identityChanges/{ch['id']}/accept",
                      json={"Revision": ch["revision"]}).status_code == 200
        m = c.get(f"/api/machines/{did}").json()
        assert m["machineTags"] == ["owner-web", "web"]
        assert m["rbacGroupName"] == "Ungrouped devices (default)"
        # Tags set by an analyst still move the device at once, as Defender's machine tags do.
        assert c.post(f"/api/machines/{did}/tags", json={"Value": "ring-pilot", "Action": "Add"}).status_code == 200
        assert c.get(f"/api/machines/{did}").json()["rbacGroupName"] == "Pilot"
