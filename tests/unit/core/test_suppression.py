"""Suppression rules: scope, AND-ed conditions, wildcards where Defender allows them."""

from __future__ import annotations

import pytest

from vigil.core.suppression import (
    SuppressionAction,
    SuppressionError,
    SuppressionRule,
    SuppressionScope,
    parse_conditions,
)

EVIDENCE = [{"FileName": "backup.sh", "FolderPath": "/opt/backup/backup.sh", "RemoteIP": "10.0.0.9",
             "ProcessCommandLine": "sh /opt/backup/backup.sh --nightly"}]


def _rule(scope: SuppressionScope = SuppressionScope.ORGANIZATION, **conds: str) -> SuppressionRule:
    return SuppressionRule(1, "Execution From Temp", scope, SuppressionAction.HIDE, parse_conditions(conds),
                           machine_id="d1" if scope is SuppressionScope.DEVICE else None)


def test_conditions_are_anded_and_wildcards_apply_to_paths() -> None:
    assert _rule(FolderPath="/opt/backup/*", Ip="10.0.0.9").applies("Execution From Temp", "d9", EVIDENCE)
    assert not _rule(FolderPath="/opt/backup/*", Ip="10.0.0.8").applies("Execution From Temp", "d9", EVIDENCE)
    assert _rule(CommandLine="*--NIGHTLY").applies("Execution From Temp", "d9", EVIDENCE)


def test_title_scope_and_enabled() -> None:
    r = _rule(SuppressionScope.DEVICE, FileName="backup.sh")
    assert r.applies("Execution From Temp", "d1", EVIDENCE)
    assert not r.applies("Execution From Temp", "d2", EVIDENCE)
    assert not r.applies("Another Title", "d1", EVIDENCE)
    disabled = SuppressionRule(2, r.alert_title, r.scope, r.action, r.conditions, "d1", enabled=False)
    assert not disabled.applies("Execution From Temp", "d1", EVIDENCE)


@pytest.mark.parametrize(("conds", "field"), [
    ({"Colour": "x"}, "conditions.Colour"),
    ({"Ip": "10.0.*"}, "conditions.Ip"),
    ({"FileName": "  "}, "conditions.FileName"),
])
def test_bad_conditions_name_the_field(conds: dict[str, str], field: str) -> None:
    with pytest.raises(SuppressionError) as e:
        parse_conditions(conds)
    assert e.value.field == field
