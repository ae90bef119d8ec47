"""The one generic registry every extension point uses."""

from __future__ import annotations

import pytest

from vigil.agent.actions.base import DuplicateAction
from vigil.agent.actions.registry import ActionRegistry
from vigil.agent.actions.registry import default_registry as default_actions
from vigil.agent.errors import DuplicateSensor, SensorError
from vigil.agent.sensors.registry import SensorRegistry
from vigil.core.registry import DuplicateName, Registry, UnknownName


def test_entries_keep_their_order_and_a_duplicate_name_raises() -> None:
    reg: Registry[int] = Registry("exporter")
    reg.register("syslog", 1)
    assert reg.add("splunk")(2) == 2
    assert reg.names() == ("syslog", "splunk") and list(reg.items()) == [("syslog", 1), ("splunk", 2)]
    assert "splunk" in reg and "kafka" not in reg and len(reg) == 2
    with pytest.raises(DuplicateName, match="exporter 'syslog' is already registered"):
        reg.register("syslog", 3)
    assert reg.get("syslog") == 1  # the first entry stays
    with pytest.raises(ValueError, match="needs a name"):
        reg.register("", 4)


def test_an_unknown_name_lists_the_known_ones() -> None:
    reg: Registry[str] = Registry("playbook")
    reg.register("contain", "c")
    reg.register("collect", "p")
    with pytest.raises(UnknownName, match=r"unknown playbook 'wipe'; known: contain, collect"):
        reg.get("wipe")
    assert reg.find("wipe") is None and reg.find("contain") == "c"
    with pytest.raises(LookupError, match=r"unknown playbooks \['a', 'b'\]; known: contain, collect"):
        reg.check_known(["contain", "b", "a"])
    reg.check_known(["collect"])
    with pytest.raises(UnknownName, match=r"known: \(none\)"):
        Registry[int]("rule").get("x")


def test_the_agents_registries_keep_their_own_errors() -> None:
    sensors = SensorRegistry()
    sensors.register("dummy", lambda ctx: None)  # type: ignore[arg-type, return-value]
    with pytest.raises(DuplicateSensor):
        sensors.register("dummy", lambda ctx: None)  # type: ignore[arg-type, return-value]
    with pytest.raises(SensorError, match="unknown sensor 'gps'; known: dummy"):
        sensors.check_known(["gps"])
    actions = default_actions()
    with pytest.raises(DuplicateAction) as e:
        actions.register("Isolate", actions.get("Isolate"))
    assert isinstance(e.value, DuplicateName)
    assert ActionRegistry().find("Isolate") is None
