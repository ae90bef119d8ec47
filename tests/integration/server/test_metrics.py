"""GET /metrics on a real server: heartbeat loss counters and ingest counts per device, and its guard."""

from __future__ import annotations

from types import SimpleNamespace

from starlette.requests import Request

from tests.support import VigilServer, enroll_raw, post_batch, process_event
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
    with sqlite_server.client() as c:  # the test client is on loopback: no credential needed
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


def _request(host: str, token: str | None = None) -> Request:
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    app = SimpleNamespace(state=SimpleNamespace(services=None))  # no token: services are not consulted
    return Request({"type": "http", "method": "GET", "path": "/metrics", "headers": headers,
                    "client": (host, 40000), "query_string": b"", "app": app})


def test_callers_off_the_host_need_a_token() -> None:
    check = metrics_guard().dependency
    assert check(_request("127.0.0.1")) is None and check(_request("::1")) is None
    try:
        check(_request("192.0.2.7"))
    except APIError as e:
        assert e.status == 401
    else:
        raise AssertionError("a remote caller without a token must be refused")
