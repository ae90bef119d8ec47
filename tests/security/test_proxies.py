"""A spoofed X-Forwarded-For from loopback moves nothing: rate limit, audit address and /metrics hold.

A real server on loopback, as the review attacked it: the attacker's requests come from 127.0.0.1
(a local process, or a proxy that passes the header through) and rotate X-Forwarded-For.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import VigilServer
from vigil.config import load_settings
from vigil.core.rbac import Permission

ATTEMPTS = 25  # more than the per-address sign-in limit of a minute


def _server(tmp_path: Path, trusted: str = "[]") -> Iterator[VigilServer]:
    srv = VigilServer.create(tmp_path / "server", "")
    toml = srv.data_dir / "vigil.toml"
    text = toml.read_text()
    assert "trusted_proxies = []\n" in text  # the default `vigil setup` writes
    toml.write_text(text.replace("trusted_proxies = []\n", f"trusted_proxies = {trusted}\n"))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def direct(tmp_path: Path) -> Iterator[VigilServer]:
    """The default: no trusted proxy, so every forwarded header is somebody's claim."""
    yield from _server(tmp_path)


@pytest.fixture
def behind_proxy(tmp_path: Path) -> Iterator[VigilServer]:
    """A server told that a proxy on 127.0.0.1 fronts it."""
    yield from _server(tmp_path, '["127.0.0.1"]')


def _spoofed(n: int) -> dict[str, str]:
    return {"X-Forwarded-For": f"198.51.100.{n % 250 + 1}", "X-Real-IP": f"198.51.100.{n % 250 + 1}"}


def _failed_sign_ins(server: VigilServer) -> list[int]:
    # A different (unknown) account each time, so only the per-address limit can stop the run.
    with server.client() as c:
        return [c.post("/api/auth/login", json={"username": f"guess{n}", "password": "wrong password"},
                       headers=_spoofed(n)).status_code for n in range(ATTEMPTS)]


def _audit(server: VigilServer, token: str, action: str) -> list[dict[str, Any]]:
    with server.client(token) as c:
        r = c.get("/api/audit", params={"action": action, "$top": 1000})
    assert r.status_code == 200, r.text
    return list(r.json()["value"])


def test_rotating_the_header_does_not_escape_the_sign_in_rate_limit(direct: VigilServer) -> None:
    statuses = _failed_sign_ins(direct)
    assert set(statuses) <= {401, 429} and 429 in statuses, statuses
    first = statuses.index(429)
    assert first >= 10 and set(statuses[first:]) == {429}  # held for the rest of the run, whatever the header said
    # Throttled from 127.0.0.1 for the minute: the admin signing in from there waits too, as the limit means.
    with direct.client() as c:
        r = c.post("/api/auth/login", json={"username": "admin", "password": direct.admin_password},
                   headers={"X-Forwarded-For": "192.0.2.200"})
    assert r.status_code == 429


def test_the_audit_log_records_the_real_peer_not_the_header(direct: VigilServer) -> None:
    token = direct.admin_token()
    with direct.client() as c:
        c.post("/api/auth/login", json={"username": "mallory", "password": "wrong password"},
               headers=_spoofed(7))
    with direct.client(token) as c:
        r = c.post("/api/tokens", json={"name": "forged-origin", "scopes": [Permission.VIEW_DATA_SECOPS.value]},
                   headers=_spoofed(9))
    assert r.status_code == 201, r.text
    failed = [e for e in _audit(direct, token, "user.sign_in_failed") if e["target_id"] == "mallory"]
    created = _audit(direct, token, "api_token.create")
    assert [e["source_ip"] for e in failed] == ["127.0.0.1"]
    assert [e["source_ip"] for e in created] == ["127.0.0.1"]


def test_metrics_open_to_the_scrape_token_only_not_to_a_local_address(direct: VigilServer) -> None:
    scrape = load_settings(direct.data_dir).scrape_token()
    assert len(scrape) >= 32
    looks_local = {"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1", "Forwarded": "for=127.0.0.1"}
    with direct.client() as c:
        assert c.get("/metrics").status_code == 401  # on loopback, no token
        assert c.get("/metrics", headers=looks_local).status_code == 401
        wrong = scrape[:-1] + ("A" if scrape[-1] != "A" else "B")
        assert c.get("/metrics", headers={"Authorization": f"Bearer {wrong}"}).status_code == 401
        assert c.get("/metrics", headers={"Authorization": f"Basic {scrape}"}).status_code == 401
    with direct.client(scrape) as c:
        r = c.get("/metrics")
    assert r.status_code == 200 and "vigil_server_telemetry_requests_total" in r.text
    with direct.client(direct.admin_token()) as c:  # an analyst's token with the permission still works
        assert c.get("/metrics").status_code == 200


def test_https_stays_https_whatever_an_untrusted_peer_claims(direct: VigilServer) -> None:
    with direct.client() as c:
        r = c.get("/login", headers={"X-Forwarded-Proto": "http"})
    assert r.headers["strict-transport-security"].startswith("max-age=")
    assert "secure" in r.headers["set-cookie"].lower()


def test_a_configured_proxy_is_believed(behind_proxy: VigilServer) -> None:
    # Each sign-in now comes from the address the proxy reports, so rotating it is rotating clients.
    assert set(_failed_sign_ins(behind_proxy)) == {401}
    token = behind_proxy.admin_token()
    failed = {e["target_id"]: e["source_ip"] for e in _audit(behind_proxy, token, "user.sign_in_failed")}
    assert failed["guess3"] == "198.51.100.4"
    # The right-most address the proxy did not write itself wins over what the client prepended.
    with behind_proxy.client() as c:
        c.post("/api/auth/login", json={"username": "chained", "password": "wrong password"},
               headers={"X-Forwarded-For": "10.9.9.9, 203.0.113.50"})
        plain = c.get("/login", headers={"X-Forwarded-Proto": "http"})
    failed = {e["target_id"]: e["source_ip"] for e in _audit(behind_proxy, token, "user.sign_in_failed")}
    assert failed["chained"] == "203.0.113.50"
    # The proxy says its client spoke plain HTTP: no HSTS, and no Secure cookie that the browser would drop.
    assert "strict-transport-security" not in plain.headers
    assert "secure" not in plain.headers["set-cookie"].lower()
    # Still no address opens /metrics, even one the trusted proxy vouches for.
    with behind_proxy.client() as c:
        assert c.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 401
