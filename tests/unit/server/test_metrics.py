"""The Prometheus exposition of per-device loss counters and ingest counters."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from vigil.server.metrics import render


def test_render_has_one_series_per_device_state_and_drop_reason() -> None:
    device = SimpleNamespace(
        id="dev1", computer_dns_name='web"1', last_seen=datetime(2026, 1, 1, tzinfo=UTC),
        counters={"produced": 120, "spooled": 100, "sent": 90, "acknowledged": 80,
                  "dropped": {"aggregated": 20, "spool_full": 5}},
        sensors={"process": "active", "file": "degraded: 1 kernel queue overflows"},
    )
    text = render([device], {"dev1": (80, 2)}, {200: 2, 422: 1})
    ids = 'device_id="dev1",device_name="web\\"1"'
    assert f"vigil_agent_events_produced_total{{{ids}}} 120" in text
    assert f"vigil_agent_events_acknowledged_total{{{ids}}} 80" in text
    assert f'vigil_agent_events_dropped_total{{{ids},reason="aggregated"}} 20' in text
    assert f"vigil_agent_events_pending{{{ids}}} 15" in text
    assert f'vigil_agent_sensor_active{{{ids},sensor="file"}} 0' in text
    assert f"vigil_server_ingested_events_total{{{ids}}} 80" in text
    assert 'vigil_server_telemetry_requests_total{status="422"} 1' in text
    assert "# TYPE vigil_agent_events_dropped_total counter" in text and text.endswith("\n")
