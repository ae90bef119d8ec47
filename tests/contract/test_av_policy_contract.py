"""Antivirus policies per device group through the service, on the in-memory fake, SQLite and PostgreSQL: stored
and versioned, merged with the tenant default, audited, refused with the field named, and scoped to the caller."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from vigil.app import antivirus
from vigil.app.errors import Forbidden, InvalidInput, NotFound
from vigil.app.ports import Store
from vigil.app.principal import Principal
from vigil.core.clock import FixedClock
from vigil.core.devices import DEFAULT_GROUP_NAME
from vigil.core.rbac import Permission

CLOCK = FixedClock(datetime(2026, 12, 7, 9, 0, tzinfo=UTC))


def who(groups: frozenset[int] | None = None, manage: bool = True) -> Principal:
    perms = {Permission.VIEW_DATA_SECOPS} | ({Permission.MANAGE_SECURITY_SETTINGS} if manage else set())
    return Principal("ana", frozenset(perms), groups, username="ana")


def test_group_policies_merge_over_the_default_and_are_versioned_and_audited(store: Store) -> None:
    antivirus.set_policy(store, CLOCK, who(), "default", {
        "realtime": True, "mode": "block", "exclusions": {"folder": ["/srv/big"]},
        "threat_actions": {"malware": "remove"}, "allowed_threats": ["PUA:Linux/Known"]})
    view = antivirus.set_policy(store, CLOCK, who(), DEFAULT_GROUP_NAME, {
        "mode": "passive", "pua_mode": "audit", "exclusions": {"extension": [".iso"]},
        "threat_actions": {"test": "audit"}})
    assert view.group_name == DEFAULT_GROUP_NAME and view.record is not None and view.record.version == 1
    got = view.effective.as_dict()
    assert got["mode"] == "passive" and got["realtime"] is True and got["pua_mode"] == "audit"
    assert got["threat_actions"] == {"malware": "remove", "test": "audit"}
    assert got["exclusions"] == {"folder": ["/srv/big/"], "extension": [".iso"]}
    assert got["allowed_threats"] == ["PUA:Linux/Known"]
    assert antivirus.effective_by_name(store, DEFAULT_GROUP_NAME) == view.effective
    assert antivirus.effective_by_name(store, "no such group").mode == "block"  # the default alone

    # set_mode (the deployment plan's entry point) keeps the rest of the group's policy.
    active = antivirus.set_mode(store, CLOCK, who(), DEFAULT_GROUP_NAME, "block")
    assert active.record is not None and active.record.version == 2
    assert active.policy.pua_mode == "audit" and active.effective.mode == "block"
    listed = antivirus.policies(store, CLOCK, who())
    assert [v.group_name for v in listed] == ["default", DEFAULT_GROUP_NAME]
    with store.begin() as uow:
        audit = uow.audit.entries("av.policy.update")
    assert [(e.target_id, e.after and e.after["version"]) for e in audit] == [
        ("default", 1), (str(view.group_id), 1), (str(view.group_id), 2)]
    assert audit[2].before == {"mode": "passive", "pua_mode": "audit", "exclusions": {"extension": [".iso"]},
                               "threat_actions": {"test": "audit"}}


@pytest.mark.parametrize(("body", "field", "text"), [
    ({"mode": "loud"}, "mode", "'loud' is not one of auto, block, audit, passive"),
    ({"threat_actions": {"malware": "explode"}}, "threat_actions", "not one of quarantine, remove, audit, allow"),
    ({"threat_actions": {"virus": "remove"}}, "threat_actions", "unknown threat type"),
    ({"pua_mode": "on"}, "pua_mode", "not one of off, audit, block"),
    ({"allowed_threats": "PUA:Linux/X"}, "allowed_threats", "expected a list of threat names"),
    ({"colour": "red"}, "colour", "unknown setting"),
])
def test_a_bad_policy_is_refused_naming_the_field(store: Store, body: dict[str, object], field: str,
                                                  text: str) -> None:
    with pytest.raises(InvalidInput) as e:
        antivirus.set_policy(store, CLOCK, who(), "default", body)
    assert e.value.field == field and text in str(e.value)
    assert antivirus.policy(store, CLOCK, who(), "default").record is None  # nothing stored


def test_permission_and_scope(store: Store) -> None:
    with pytest.raises(NotFound):
        antivirus.set_mode(store, CLOCK, who(), "Nowhere", "passive")
    with pytest.raises(InvalidInput):
        antivirus.set_mode(store, CLOCK, who(), "default", "sleepy")
    with pytest.raises(Forbidden):
        antivirus.set_policy(store, CLOCK, who(manage=False), "default", {"mode": "audit"})
    with pytest.raises(Forbidden):  # the default reaches every group: a caller scoped to some cannot change it
        antivirus.set_policy(store, CLOCK, who(groups=frozenset({999})), "default", {"mode": "audit"})
