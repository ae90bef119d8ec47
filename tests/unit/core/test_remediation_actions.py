"""The remediation actions' parameters are checked with the field named, and each is undone by id."""

from __future__ import annotations

import pytest

from vigil.core.actions import ActionRuleError, ActionStatus, ActionType, undo_of, validate_parameters


@pytest.mark.parametrize(("kind", "params", "field"), [
    (ActionType.REMOVE_PERSISTENCE_ENTRY, {"Path": "etc/cron.d/x"}, "Path"),
    (ActionType.REMOVE_PERSISTENCE_ENTRY, {}, "Path"),
    (ActionType.REMOVE_PERSISTENCE_ENTRY, {"Lines": ["a"]}, "Path"),
    (ActionType.STOP_AND_QUARANTINE_FILE, {"Path": "/tmp/x", "KeepPersistence": ["rel"]}, "KeepPersistence[0]"),
    (ActionType.REMOVE_PERSISTENCE_ENTRY, {"Path": "/etc/crontab", "Lines": ["a"], "Match": "b"}, "Lines"),
    (ActionType.REMOVE_PERSISTENCE_ENTRY, {"Path": "/etc/crontab", "Lines": ["a\nb"]}, "Lines[0]"),
    (ActionType.REMOVE_PERSISTENCE_ENTRY, {"Path": "/etc/crontab", "Match": ""}, "Match"),
    (ActionType.DISABLE_LOCAL_USER, {"AccountName": "root"}, "AccountName"),
    (ActionType.DISABLE_LOCAL_USER, {"AccountName": "Bad:Name"}, "AccountName"),
    (ActionType.STOP_AND_DISABLE_SERVICE, {"Unit": "evil"}, "Unit"),
    (ActionType.STOP_AND_DISABLE_SERVICE, {"Unit": "../x.service"}, "Unit"),
    (ActionType.ENABLE_LOCAL_USER, {"UndoOf": "not an id"}, "UndoOf"),
])
def test_bad_parameters_name_the_field(kind: ActionType, params: dict[str, object], field: str) -> None:
    with pytest.raises(ActionRuleError) as e:
        validate_parameters(kind, params)
    assert e.value.field == field


def test_good_parameters_and_undo_by_id() -> None:
    assert validate_parameters(ActionType.REMOVE_PERSISTENCE_ENTRY, {"Path": "/etc/cron.d/x", "Match": "/tmp/p"}) \
        == {"Path": "/etc/cron.d/x", "Match": "/tmp/p"}
    assert validate_parameters(ActionType.DISABLE_LOCAL_USER, {"AccountName": "mallory"}) == {"AccountName": "mallory"}
    assert validate_parameters(ActionType.STOP_AND_DISABLE_SERVICE, {"Unit": "getty@tty1.service"}) \
        == {"Unit": "getty@tty1.service"}
    aid = "0f8e2a4c-1d3b-4c5e-8f7a-9b0c1d2e3f4a"
    for done, undo in ((ActionType.REMOVE_PERSISTENCE_ENTRY, ActionType.RESTORE_PERSISTENCE_ENTRY),
                       (ActionType.DISABLE_LOCAL_USER, ActionType.ENABLE_LOCAL_USER),
                       (ActionType.STOP_AND_DISABLE_SERVICE, ActionType.START_AND_ENABLE_SERVICE)):
        kind, params = undo_of(done, aid, ActionStatus.SUCCEEDED)
        assert (kind, params) == (undo, {"UndoOf": aid})
        assert validate_parameters(kind, params) == {"UndoOf": aid}
    with pytest.raises(ActionRuleError):
        undo_of(ActionType.DISABLE_LOCAL_USER, aid, ActionStatus.FAILED)
