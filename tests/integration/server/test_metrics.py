"""GET /metrics on a real server: heartbeat loss counters and ingest counts per device, and its guard."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from starlette.requests import Request

from tests.support import VigilServer, enroll_raw, post_batch, process_event
from vigil.config import load_settings
from vigil.server.errors import APIError
from vigil.server.metrics import metrics_guard
from vigil.wire import HEARTBEAT_PATH


def test_metrics_show_each_devices_counters_and_what_the_server_stored(sqlite_server: VigilServer) -> None:
    dev = enroll_raw(sqlite_server, sqlite_server.onboarding_package()["token"], hostname="metrics-host").json()
    device_id, credential = dev["device_id"], dev["credential"]
    assert post_batch(sqlite_server, credential, [process_event(device_id, i) for i in range(1, 4)]).status_code == 200
    beat = {"agent_version": "test", "counters": {"produced": 10, "spooled": 7, "sent": 3, "acknowledged": 3,
                                                   "dropped": {"aggregated": 2, "rate_limit.file": 1}},
            "sensors": {"process": "active", "file": "degraded: 1 kernel queue overflows"}}
    with sqlite_server.client(credential) as c:
        assert c.post(HEARTBEAT_PATH, json=beat).status_code == 200
    with sqlite_server.client() as c:  # on loopback, and still refused: the address opens nothing
        assert c.get("/metrics").status_code == 401
    with sqlite_server.client(load_settings(sqlite_server.data_dir).scrape_token()) as c:
        r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    ids = f'device_id="{device_id}",device_name="metrics-host"'
    text = r.text
    assert f"vigil_agent_events_produced_total{{{ids}}} 10" in text
    assert f'vigil_agent_events_dropped_total{{{ids},reason="rate_limit.file"}} 1' in text
    assert f"vigil_agent_events_pending{{{ids}}} 4" in text
    assert f'vigil_agent_sensor_active{{{ids},sensor="process"}} 1' in text
    assert f"vigil_server_ingested_events_total{{{ids}}} 3" in text
    assert 'vigil_server_telemetry_requests_total{status="200"} 1' in text


SCRAPE_TOKEN = "s" * 43


def _request(host: str, token: str | None = None, configured: str = SCRAPE_TOKEN) -> Request:
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    # Only the scrape token is checked here; an analyst token would need the database (the real-server tests).
    svc = SimpleNamespace(settings=SimpleNamespace(scrape_token=lambda: configured))
    app = SimpleNamespace(state=SimpleNamespace(services=svc))
    return Request({"type": "http", "method": "GET", "path": "/metrics", "headers": headers,
                    "client": (host, 40000), "query_string": b"", "app": app})


@pytest.mark.parametrize(
    ("host", "token", "configured"),
    [("127.0.0.1", None, SCRAPE_TOKEN), ("::1", None, SCRAPE_TOKEN), ("192.0.2.7", None, SCRAPE_TOKEN),
     ("127.0.0.1", "", "")],  # a wrong token is tried as an analyst token: tests/security does that one
)
def test_no_address_opens_metrics_only_the_scrape_token(host: str, token: str | None, configured: str) -> None:
    check = metrics_guard().dependency
    with pytest.raises(APIError) as refused:
        check(_request(host, token, configured))
    assert refused.value.status == 401
    assert check(_request("192.0.2.7", SCRAPE_TOKEN)) is None  # the token, from anywhere: every device
