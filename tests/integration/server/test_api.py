"""The public API: Defender's machine fields, timeline, sign-in, and a guard on every route."""

from __future__ import annotations

import pytest

from tests.integration.server.rbac_support import all_routes
from tests.support import VigilServer, enroll_raw, post_batch, process_event
from vigil.config import load_settings
from vigil.server.app import create_app
from vigil.server.auth import PERMISSION_ATTR

MACHINE_FIELDS = {
    "id", "computerDnsName", "firstSeen", "lastSeen", "osPlatform", "version", "lastIpAddress",
    "healthStatus", "machineTags", "rbacGroupName",
}


def test_machines_have_defender_fields_and_timeline_filters(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    dev = enroll_raw(server, server.onboarding_package()["token"], "web-01.example.org").json()
    events = [
        process_event(dev["device_id"], 1, Timestamp="2026-11-28T08:00:00Z"),
        process_event(dev["device_id"], 2, Timestamp="2026-11-28T10:00:00Z"),
    ]
    assert post_batch(server, dev["credential"], events).status_code == 200
    with server.client(server.admin_token()) as c:
        listing = c.get("/api/machines").json()["value"]
        assert len(listing) == 1 and set(listing[0]) >= MACHINE_FIELDS
        m = c.get(f"/api/machines/{dev['device_id']}").json()
        assert m["computerDnsName"] == "web-01.example.org"
        assert m["healthStatus"] == "Active"
        assert m["rbacGroupName"] == "Ungrouped devices (default)"
        window = {"from": "2026-11-28T07:00:00Z", "to": "2026-11-28T09:00:00Z"}
        tl = c.get(f"/api/machines/{dev['device_id']}/timeline", params=window).json()["value"]
        assert [e["ReportId"] for e in tl] == [1]
        assert c.get("/api/machines/nope").status_code == 404
        bad = c.get(f"/api/machines/{dev['device_id']}/timeline", params={"from": "soon"})
        assert bad.status_code == 422 and bad.json()["field"] == "from"


def test_sign_in_refuses_wrong_password_and_forged_tokens(sqlite_server: VigilServer) -> None:
    with sqlite_server.client() as c:
        assert c.post("/api/auth/login", json={"username": "admin", "password": "wrong"}).status_code == 401
        assert c.post("/api/auth/login", json={"username": "ghost", "password": "x"}).status_code == 401
    token = sqlite_server.admin_token()
    with sqlite_server.client(token[:-2] + "xx") as c:
        assert c.get("/api/machines").status_code == 401
    # A device credential is not an analyst token.
    dev = enroll_raw(sqlite_server, sqlite_server.onboarding_package()["token"]).json()
    with sqlite_server.client(dev["credential"]) as c:
        assert c.get("/api/machines").status_code == 401


def test_every_route_declares_its_guard(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = VigilServer.create(tmp_path / "s", "")
    app = create_app(load_settings(server.data_dir))
    unguarded = []
    routes = all_routes(app)  # included routers stay nested in app.routes; walk them all
    assert len(routes) > 30
    for path, route in routes:
        guards = [getattr(d.call, PERMISSION_ATTR, None) for d in route.dependant.dependencies]
        if not any(guards):
            unguarded.append(path)
    assert unguarded == []


@pytest.mark.parametrize("path", ["/api/machines", "/api/machines/x", "/api/machines/x/timeline"])
def test_guarded_routes_refuse_anonymous_callers(sqlite_server: VigilServer, path: str) -> None:
    with sqlite_server.client() as c:
        r = c.get(path)
    assert r.status_code == 401 and r.json()["error"] == "unauthenticated"


def test_onboarding_package_api_checks_its_input(sqlite_server: VigilServer) -> None:
    with sqlite_server.client(sqlite_server.admin_token()) as c:
        r = c.post("/api/onboarding/packages", json={"expires": "forever"})
        assert r.status_code == 422 and "forever" in r.json()["detail"]
        r = c.post("/api/onboarding/packages", json={"group": "No such group"})
        assert r.status_code == 404 and r.json()["field"] == "group"
        r = c.post("/api/onboarding/packages", json={"uses": 0})
        assert r.status_code == 422 and r.json()["field"] == "uses"
        pkg = c.post("/api/onboarding/packages", json={"expires": "2h", "uses": 5}).json()
    assert pkg["server_url"] == sqlite_server.url and len(pkg["ca_sha256"]) == 64
