"""Incident correlation rules and generated names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from vigil.core.incidents import (
    Entity,
    EntityKind,
    IncidentView,
    entities_of,
    find_incident,
    incident_name,
    max_severity,
)

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def test_entities_skip_system_binaries_loopback_and_common_accounts() -> None:
    ents = entities_of([
        {"SHA256": "AA", "FolderPath": "/tmp/x", "InitiatingProcessSHA256": "bb",
         "InitiatingProcessFolderPath": "/usr/bin/bash", "RemoteIP": "203.0.113.5", "AccountName": "alice",
         "InitiatingProcessAccountName": "root"},
        {"RemoteIP": "127.0.0.1", "RemoteUrl": "Evil.example"},
    ])
    assert ents == {
        Entity(EntityKind.FILE, "aa"), Entity(EntityKind.IP, "203.0.113.5"),
        Entity(EntityKind.USER, "alice"), Entity(EntityKind.URL, "evil.example"),
    }


def test_same_device_joins_within_window_only() -> None:
    inc = IncidentView(1, frozenset({"d1"}), frozenset(), T0)
    assert find_incident([inc], "d1", frozenset(), T0 + timedelta(hours=5)) == inc
    assert find_incident([inc], "d1", frozenset(), T0 + timedelta(hours=7)) is None
    assert find_incident([inc], "d2", frozenset(), T0) is None


def test_shared_entity_joins_across_devices_and_latest_wins() -> None:
    ip = Entity(EntityKind.IP, "203.0.113.5")
    old = IncidentView(1, frozenset({"d1"}), frozenset({ip}), T0)
    new = IncidentView(2, frozenset({"d3"}), frozenset({ip}), T0 + timedelta(hours=2))
    assert find_incident([old, new], "d2", frozenset({ip}), T0 + timedelta(hours=3)) == new
    assert find_incident([old], "d2", frozenset({ip}), T0 + timedelta(hours=25)) is None


def test_names_and_severity() -> None:
    assert incident_name(["Execution"], ["web-01"], ["Sigma"]) == "Execution incident on web-01"
    assert incident_name(["Execution", "Persistence"], ["a", "b"], ["Sigma"]) == (
        "Multi-stage incident on multiple endpoints involving Execution & Persistence"
    )
    assert incident_name(["Execution", "Persistence"], ["a"], ["Sigma", "VigilAv"]) == (
        "Multi-stage incident on a reported by multiple sources"
    )
    assert max_severity(["Low", "High", "Medium"]) == "High"
