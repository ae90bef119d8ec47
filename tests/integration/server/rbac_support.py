"""Helpers for the permission tests: users, roles, groups and devices made through the real API."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support import VigilServer, enroll_raw, post_batch, process_event

PASSWORD = "correct horse battery staple"


def admin(server: VigilServer) -> httpx.Client:
    return server.client(server.admin_token())


def make_user(server: VigilServer, name: str, *, role: str = "read-only", email: str | None = None,
              groups: tuple[str, ...] = ()) -> None:
    with admin(server) as c:
        r = c.post("/api/users", json={"username": name, "password": PASSWORD, "role": role, "email": email})
        assert r.status_code == 201, r.text
        for g in groups:
            assert c.put(f"/api/usergroups/{g}/members/{name}").status_code == 200


def groups_a_and_b(c: httpx.Client) -> None:
    """Device groups "Group A" and "Group B" (host names starting "a-" / "b-") open to user groups ug-a and ug-b;
    the default group kept to administrators (a device group open to no user group is open to all)."""
    for g in ("a", "b"):
        r = c.put(f"/api/machinegroups/Group {g.upper()}", json={
            "rules": [{"property": "name", "operator": "startsWith", "value": f"{g}-"}], "userGroups": [f"ug-{g}"]})
        assert r.status_code == 200, r.text
    r = c.put("/api/machinegroups/Ungrouped devices (default)", json={"userGroups": ["ug-admins"]})
    assert r.status_code == 200, r.text


def token_of(server: VigilServer, name: str) -> str:
    with server.client() as c:
        r = c.post("/api/auth/login", json={"username": name, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])


def enroll_with_alert(server: VigilServer, hostname: str) -> dict[str, Any]:
    """A device that sent a detection-test event, so it has telemetry and an alert."""
    dev = dict(enroll_raw(server, server.onboarding_package()["token"], hostname).json())
    event = process_event(dev["device_id"], 1, DeviceName=hostname, FileName="echo", FolderPath="/usr/bin/echo",
                          ProcessCommandLine="echo vigil-detection-test")
    assert post_batch(server, dev["credential"], [event]).status_code == 200
    return dev


def all_routes(app: Any) -> list[tuple[str, Any]]:
    """(full path, APIRoute) for every route, also inside included routers (FastAPI keeps them nested)."""
    from fastapi.routing import APIRoute

    def walk(routes: list[Any], prefix: str) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        for r in routes:
            if hasattr(r, "original_router"):
                out += walk(r.original_router.routes, prefix + r.include_context.prefix)
            elif isinstance(r, APIRoute):
                out.append((prefix + r.path, r))
        return out

    return walk(list(app.routes), "")
