"""Device-group scope over every GET route of the API: nothing that names a group-B object reaches a group-A analyst.

The routes are read off the app, so a new list route is walked (and must keep group B out) without editing this file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.server.rbac_support import admin, all_routes, groups_a_and_b, make_user, token_of
from tests.support import VigilServer, enroll_raw, post_batch, process_event
from vigil.config import load_settings
from vigil.core.rbac import Permission
from vigil.server.app import create_app
from vigil.server.auth import PERMISSION_ATTR, PUBLIC

TIER1 = [Permission.VIEW_DATA_SECOPS.value, Permission.ALERTS_INVESTIGATION.value]
# Everything a group-scoped role can hold: Manage portal system settings rewrites the groups' access itself, so it is
# tenant-wide by nature (audit log, users, roles) and is not given to scoped analysts.
SCOPED_ALL = [p.value for p in Permission if p is not Permission.MANAGE_PORTAL_SETTINGS]
# JSON keys whose integer value identifies an object (ints are too common to look for anywhere).
ID_KEYS = ("incidentId", "redirectIncidentId", "sessionId", "id")


def guarded_gets(server: VigilServer) -> list[str]:
    """Every GET route under /api that a signed-in caller reaches, read off the app itself."""
    out = []
    for path, route in all_routes(create_app(load_settings(server.data_dir))):
        guards = [getattr(d.call, PERMISSION_ATTR, None) for d in route.dependant.dependencies]
        guard = next((g for g in guards if g), None)
        if path.startswith("/api/") and "GET" in route.methods and guard not in (PUBLIC, "device"):
            out.append(path)
    return out


def _device(server: VigilServer, hostname: str, **cols: Any) -> dict[str, Any]:
    """An enrolled device that raised the detection-test alert, with evidence columns of its own."""
    dev = dict(enroll_raw(server, server.onboarding_package()["token"], hostname).json())
    event = process_event(dev["device_id"], 1, DeviceName=hostname, FileName="echo", FolderPath="/usr/bin/echo",
                          ProcessCommandLine="echo vigil-detection-test", **cols)
    assert post_batch(server, dev["credential"], [event]).status_code == 200
    return dev


def _walk(value: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    """Every (key, scalar) of a JSON document, keys included as scalars of their own."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield "", k
            yield from _walk(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v, key)
    else:
        yield key, value


def _leaks(body: str, content_type: str, texts: set[str], ids: dict[str, set[int]]) -> list[str]:
    if "json" not in content_type:  # CSV, HTML and Markdown exports: the plain text must not name them either
        return [t for t in texts if t.lower() in body.lower()]
    found = []
    for key, v in _walk(json.loads(body)):
        if isinstance(v, str):
            found += [f"{key or '(key)'}={v[:80]!r}" for t in texts if t.lower() in v.lower()]
        elif isinstance(v, int) and not isinstance(v, bool) and v in ids.get(key, set()):
            found.append(f"{key}={v}")
    return found


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Group A (one device), group B (two devices) and every kind of object on group B's devices."""
    server = VigilServer.create(tmp_path_factory.mktemp("scope") / "server", "")
    server.start()
    try:
        a = _device(server, "a-web-01.corp.test", AccountName="alice-svc")
        b = _device(server, "b-db-01.corp.test", AccountName="b-only-account", SHA256="b" * 64)
        b2 = _device(server, "b-app-02.corp.test", AccountName="b2-only-account")
        with admin(server) as c:
            groups_a_and_b(c)
            for name, perms in (("tier1", TIER1), ("scoped-all", SCOPED_ALL)):
                r = c.put(f"/api/roles/{name}", json={"permissions": perms, "userGroups": [f"ug-{name}"]})
                assert r.status_code == 200, r.text
            assert c.post("/api/rbac/mode", json={"mode": "rbac"}).status_code == 200
            alert = {d["device_id"]: c.get("/api/alerts", params={"machineId": d["device_id"]}).json()["value"][0]
                     for d in (a, b, b2)}
            incident = {k: v["incidentId"] for k, v in alert.items()}
            # One incident spanning both groups: group A's analysts see it, but only its group-A part.
            r = c.post(f"/api/incidents/{incident[a['device_id']]}/merge",
                       json={"incidentIds": [incident[b["device_id"]]]})
            assert r.status_code == 200 and len(r.json()["machineIds"]) == 2, r.text
            actions = {}
            for d in (a, b, b2):
                for kind in ("runAntiVirusScan", "collectInvestigationPackage"):
                    r = c.post(f"/api/machines/{d['device_id']}/{kind}", json={"Comment": "scope test"})
                    assert r.status_code == 201, r.text
                    actions.setdefault(d["device_id"], []).append(r.json()["id"])
            r = c.post(f"/api/machines/{b['device_id']}/LiveResponse/sessions")
            assert r.status_code == 201, r.text
            b_session = r.json()["id"]
            r = c.post(f"/api/machines/{b2['device_id']}/tags", json={"Value": "b-only-tag", "Action": "Add"})
            assert r.status_code == 200, r.text
            rules = {}
            for d in (a, b):
                r = c.post("/api/suppressionRules", json={
                    "alertTitle": alert[d["device_id"]]["title"], "scope": "Device", "machineId": d["device_id"],
                    "action": "Resolve", "comment": "scope test"})
                assert r.status_code == 201, r.text
                rules[d["device_id"]] = r.json()["id"]
        for user in ("tier1", "scoped-all"):
            make_user(server, f"alice-{user}", groups=("ug-a", f"ug-{user}"))
        b_devices = (b, b2)
        yield {
            "server": server, "a": a, "b": b,
            "texts": {s for d in b_devices for s in (d["device_id"], alert[d["device_id"]]["id"],
                                                     *actions[d["device_id"]])}
            | {"b-db-01", "b-app-02", "b-only-account", "b2-only-account", "b" * 64, "b-only-tag", "Group B"},
            "ids": {"incidentId": {incident[b2["device_id"]]}, "redirectIncidentId": {incident[b2["device_id"]]},
                    "sessionId": {b_session}},
            "a_values": {"machine_id": a["device_id"], "alert_id": alert[a["device_id"]]["id"],
                         "incident_id": str(incident[a["device_id"]]), "action_id": actions[a["device_id"]][1],
                         "rule_id": str(rules[a["device_id"]]), "session_id": str(b_session), "id": a["device_id"]},
            "b_values": {"machine_id": b["device_id"], "alert_id": alert[b["device_id"]]["id"],
                         "incident_id": str(incident[b2["device_id"]]), "action_id": actions[b["device_id"]][1],
                         "rule_id": str(rules[b["device_id"]]), "session_id": str(b_session), "id": b["device_id"]},
            "b_rule": rules[b["device_id"]],
        }
    finally:
        server.stop()


def _fill(path: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "1"), path)


@pytest.mark.parametrize("role", ["tier1", "scoped-all"])
def test_no_get_route_names_an_object_of_another_device_group(world: dict[str, Any], role: str) -> None:
    server = world["server"]
    gets = guarded_gets(server)
    assert len(gets) >= 20 and "/api/suppressionRules" in gets and "/api/machineactions" in gets
    leaks, answered = [], []
    with server.client(token_of(server, f"alice-{role}")) as c:
        for path in gets:
            # Filled with group A's objects: every answer, errors included, must keep group B out.
            r = c.get(_fill(path, world["a_values"]))
            if r.status_code == 200:
                answered.append(path)
            leaks += [f"{path} ({r.status_code}): {x}" for x in
                      _leaks(r.text, r.headers.get("content-type", ""), world["texts"], world["ids"])]
            if "{" in path:
                # Filled with group B's objects: not found, or at least nothing of B in a success.
                r = c.get(_fill(path, world["b_values"]))
                if r.status_code < 300:
                    leaks.append(f"{path} with group B's ids → {r.status_code}")
    assert leaks == [], "\n".join(leaks)
    # The walk read real listings, not a wall of 403s: the list routes a Tier-1 analyst holds all answered.
    for listed in ("/api/machines", "/api/alerts", "/api/incidents", "/api/machineactions", "/api/suppressionRules",
                   "/api/machinegroups", "/api/incidents/{incident_id}", "/api/machineactions/export.csv"):
        assert listed in answered, f"{listed} did not answer {role}"


def test_a_device_rule_of_another_group_cannot_be_changed_or_made(world: dict[str, Any]) -> None:
    server, b = world["server"], world["b"]
    with server.client(token_of(server, "alice-scoped-all")) as c:
        assert [r["machineId"] for r in c.get("/api/suppressionRules").json()["value"]] == [world["a"]["device_id"]]
        assert c.patch(f"/api/suppressionRules/{world['b_rule']}", json={"enabled": False}).status_code == 404
        assert c.delete(f"/api/suppressionRules/{world['b_rule']}").status_code == 404
        r = c.post("/api/suppressionRules", json={"alertTitle": "x", "scope": "Device", "machineId": b["device_id"],
                                                   "comment": "reaching into group B"})
        assert r.status_code == 404 and r.json()["field"] == "machineId", r.text
    with admin(server) as c:
        rule = next(r for r in c.get("/api/suppressionRules").json()["value"] if r["id"] == world["b_rule"])
        assert rule["enabled"] is True and rule["machineId"] == b["device_id"]  # untouched, and the admin sees it
