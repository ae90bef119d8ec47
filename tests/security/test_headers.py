"""Every route the server has answers with the security headers: walked from the app's own route table."""

from __future__ import annotations

import re
from typing import Any

import httpx
from fastapi.routing import APIRoute
from starlette.routing import Mount, Route

from tests.integration.server.rbac_support import all_routes, enroll_with_alert
from tests.support import VigilServer
from vigil.config import load_settings
from vigil.server.app import create_app
from vigil.server.headers import CSP

EXPECTED = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


def _get_paths(server: VigilServer) -> list[str]:
    """Every GET path of an app built from this server's settings, API and portal alike, plus the plain routes."""
    app = create_app(load_settings(server.data_dir))
    paths = [p for p, r in all_routes(app) if isinstance(r, APIRoute) and "GET" in r.methods]
    for r in app.routes:
        if isinstance(r, Route) and not isinstance(r, APIRoute) and "GET" in (r.methods or ()):
            paths.append(r.path)  # /api/openapi.json, /api/docs
        elif isinstance(r, Mount):
            paths.append(r.path + "/vigil.css")
            paths.append(r.path + "/vigil.js")
    assert len(paths) > 40 and "/devices/{machine_id}" in paths and "/api/docs" in paths
    return paths


def _objects(server: VigilServer) -> dict[str, str]:
    """Ids of real objects for the path parameters: a device with an alert, its incident, an action."""
    dev = enroll_with_alert(server, "headers-host")
    with server.client(server.admin_token()) as c:
        alert = c.get("/api/alerts").json()["value"][0]["id"]
        incident = c.get("/api/incidents").json()["value"][0]["incidentId"]
        r = c.post(f"/api/machines/{dev['device_id']}/isolate", json={"Comment": "header walk"})
        assert r.status_code == 201, r.text
        action = r.json()["id"]
    return {"machine_id": dev["device_id"], "alert_id": str(alert), "incident_id": str(incident),
            "action_id": str(action), "session_id": "no-such-session"}


def _sign_in(server: VigilServer, c: httpx.Client) -> None:
    c.get("/login")
    r = c.post("/login", data={"username": "admin", "password": server.admin_password,
                               "csrf": c.cookies["vigil_csrf"]})
    assert r.status_code == 303, r.text
    assert c.cookies.get("vigil_session")


def _problems(path: str, r: httpx.Response) -> list[str]:
    out = []
    if r.status_code >= 500:
        out.append(f"{path}: {r.status_code}")
    for name, value in EXPECTED.items():
        if r.headers.get(name) != value:
            out.append(f"{path}: {name} = {r.headers.get(name)!r}")
    if not r.headers.get("strict-transport-security", "").startswith("max-age=31536000"):
        out.append(f"{path}: no HSTS of a year over TLS")
    csp = r.headers.get("content-security-policy", "")
    if path == "/api/docs":  # its own policy, but still nothing inline by permission and no framing
        if "'unsafe-inline'" in csp or "frame-ancestors 'none'" not in csp or "'sha256-" not in csp:
            out.append(f"{path}: CSP {csp!r}")
    elif path == "/api/redoc":  # ReDoc injects its styles: inline style on this page only, never inline script
        script = next((d for d in csp.split(";") if d.strip().startswith("script-src")), "")
        if "'unsafe-inline'" in script or "frame-ancestors 'none'" not in csp or "http" in csp:
            out.append(f"{path}: CSP {csp!r}")
    elif csp != CSP:
        out.append(f"{path}: CSP {csp!r}")
    for cookie in r.headers.get_list("set-cookie"):
        flags = {f.strip().lower() for f in cookie.split(";")[1:]}
        if cookie.startswith("vigil_") and not {"secure", "httponly"} <= flags | {
                f.split("=")[0] for f in flags}:
            out.append(f"{path}: cookie {cookie.split('=')[0]} lacks Secure or HttpOnly")
        if cookie.startswith(("vigil_session", "vigil_csrf")) and "samesite=strict" not in flags:
            out.append(f"{path}: cookie {cookie.split('=')[0]} is not SameSite=Strict")
    return out


def test_every_route_signed_in_and_anonymous_carries_the_headers(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    ids = _objects(server)
    paths = _get_paths(server)
    problems: list[str] = []
    answered: dict[int, int] = {}
    with server.client() as signed_in, server.client() as anonymous:
        _sign_in(server, signed_in)
        for template in paths:
            path = re.sub(r"\{(\w+)\}", lambda m: ids.get(m.group(1), "unknown"), template)
            for client in (signed_in, anonymous):
                r = client.get(path, follow_redirects=False)
                answered[r.status_code] = answered.get(r.status_code, 0) + 1
                problems += _problems(template, r)
        # Refusals and errors carry them too: a write without CSRF, a bad body, an unknown path.
        extra: list[tuple[str, Any]] = [
            ("POST /api/tokens", signed_in.post("/api/tokens", json={})),
            ("POST /api/auth/login", anonymous.post("/api/auth/login", json={"username": ""})),
            ("GET /no/such/page", signed_in.get("/no/such/page")),
        ]
        for label, r in extra:
            assert r.status_code in (401, 403, 404, 422), (label, r.status_code)
            problems += _problems(label, r)
    assert problems == []
    # The walk reached real pages, not only refusals: most signed-in GETs answered 200.
    assert answered.get(200, 0) >= len(paths) * 0.6, answered
