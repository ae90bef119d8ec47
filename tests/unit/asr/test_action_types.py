"""Every ASR rule's DeviceEvents action types are declared in the telemetry schema, or ingest would drop them."""

from __future__ import annotations

from vigil.asr import AsrMode, catalogue
from vigil.core.telemetry import ASR_RULE_NAMES, DEVICE_EVENTS


def test_the_schema_knows_every_rule_and_outcome() -> None:
    assert tuple(r.name for r in catalogue()) == ASR_RULE_NAMES
    for r in catalogue():
        for mode in (AsrMode.AUDIT, AsrMode.BLOCK, AsrMode.WARN):
            assert r.action_type(mode) in DEVICE_EVENTS.action_types
        assert f"Asr{r.name}Terminated" in DEVICE_EVENTS.action_types
    assert "ExploitGuardNetworkProtectionBlocked" in DEVICE_EVENTS.action_types
