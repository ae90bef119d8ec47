"""An antivirus policy change reaches the group's devices in the signed ApplyProtectionPolicy command, and the agent
keeps what it carries as the policy its antivirus applies."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from vigil.agent.antivirus import served_policy, store_served_policy
from vigil.app import antivirus, asr
from vigil.app.memory import MemoryState, MemoryStore
from vigil.app.ports import DeviceRecord
from vigil.app.principal import Principal
from vigil.asr import bundle
from vigil.av.policy import PolicyError
from vigil.core.actions import ActionType
from vigil.core.clock import FixedClock
from vigil.core.devices import DEFAULT_GROUP_NAME
from vigil.core.rbac import Permission

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
A, B = "a" * 40, "b" * 40
WHO = Principal("ana", frozenset({Permission.VIEW_DATA_SECOPS, Permission.MANAGE_SECURITY_SETTINGS}), None,
                username="ana")


def test_the_groups_devices_get_the_merged_policy_signed_and_the_agent_keeps_it(tmp_path: Path) -> None:
    s = MemoryState(groups={DEFAULT_GROUP_NAME: 1, "Servers": 2})
    for dev, group in ((A, 1), (B, 2)):
        s.devices[dev] = DeviceRecord(dev, dev[:5], "Linux", "6.1", None, "1.0", group, "g", NOW, NOW)
    store = MemoryStore(s)
    antivirus.set_policy(store, FixedClock(NOW), WHO, None, {"realtime": True, "threat_actions": {"pua": "audit"}})
    assert {a.device_id for a in store.state.actions} == {A, B}
    view = antivirus.set_mode(store, FixedClock(NOW), WHO, "Servers", "passive")
    assert view.devices_updated == 1
    last = store.state.actions[-1]
    assert (last.device_id, last.type) == (B, ActionType.APPLY_PROTECTION_POLICY)
    assert last.parameters["Antivirus"] == {"realtime": True, "mode": "passive", "threat_actions": {"pua": "audit"}}
    assert "av:1.1" in bundle.from_json(last.parameters).revision  # the ASR part of the bundle still reads

    # An ASR change re-sends the antivirus part too: one bundle, one signed path.
    asr.set_policy(store, FixedClock(NOW), WHO, "Servers", asr.parse_policy({"modes": {}}))
    assert store.state.actions[-1].parameters["Antivirus"]["mode"] == "passive"

    store_served_policy(tmp_path, last.parameters["Antivirus"])
    kept = served_policy(tmp_path)
    assert (kept.mode, kept.realtime, kept.action_for("pua")) == ("passive", True, "audit")
    with pytest.raises(PolicyError, match="pua_mode"):
        store_served_policy(tmp_path, {"pua_mode": "sometimes"})
    assert served_policy(tmp_path).mode == "passive"  # the last good one stays
