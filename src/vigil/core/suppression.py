"""Alert suppression rules: conditions on an alert's evidence, with Defender's scope and actions."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class SuppressionScope(StrEnum):
    DEVICE = "Device"  # the same alert title on one device
    ORGANIZATION = "Organization"  # the same alert title anywhere


class SuppressionAction(StrEnum):
    HIDE = "Hide"  # hidden alerts also leave the APIs
    RESOLVE = "Resolve"


class ConditionField(StrEnum):
    SHA256 = "Sha256"
    SHA1 = "Sha1"
    FILE_NAME = "FileName"
    FOLDER_PATH = "FolderPath"
    IP = "Ip"
    URL = "Url"
    COMMAND_LINE = "CommandLine"


# Which evidence columns each condition field looks at, and whether it allows wildcards.
_COLUMNS: dict[ConditionField, tuple[tuple[str, ...], bool]] = {
    ConditionField.SHA256: (("SHA256", "InitiatingProcessSHA256"), False),
    ConditionField.SHA1: (("SHA1", "InitiatingProcessSHA1"), False),
    ConditionField.FILE_NAME: (("FileName", "InitiatingProcessFileName"), True),
    ConditionField.FOLDER_PATH: (("FolderPath", "InitiatingProcessFolderPath"), True),
    ConditionField.IP: (("RemoteIP",), False),
    ConditionField.URL: (("RemoteUrl",), True),
    ConditionField.COMMAND_LINE: (("ProcessCommandLine", "InitiatingProcessCommandLine"), True),
}


class SuppressionError(ValueError):
    """A suppression rule is malformed; ``field`` names the offending part."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


@dataclass(frozen=True)
class Condition:
    field: ConditionField
    value: str

    def matches(self, evidence: Mapping[str, Any]) -> bool:
        columns, wildcards = _COLUMNS[self.field]
        want = self.value.lower()
        for col in columns:
            got = evidence.get(col)
            if got is None:
                continue
            text = str(got).lower()
            if (fnmatch.fnmatchcase(text, want) if wildcards else text == want):
                return True
        return False


@dataclass(frozen=True)
class SuppressionRule:
    id: int
    alert_title: str
    scope: SuppressionScope
    action: SuppressionAction
    conditions: tuple[Condition, ...] = field(default_factory=tuple)
    machine_id: str | None = None  # required when scope is Device
    enabled: bool = True

    def applies(self, title: str, machine_id: str | None, evidence: Iterable[Mapping[str, Any]]) -> bool:
        """Conditions are AND-ed; each must hold on some evidence item."""
        if not self.enabled or title != self.alert_title:
            return False
        if self.scope is SuppressionScope.DEVICE and machine_id != self.machine_id:
            return False
        items = list(evidence)
        return all(any(c.matches(ev) for ev in items) for c in self.conditions)


def parse_conditions(raw: Mapping[str, str]) -> tuple[Condition, ...]:
    out = []
    for name, value in raw.items():
        try:
            f = ConditionField(name)
        except ValueError:
            allowed = ", ".join(f.value for f in ConditionField)
            raise SuppressionError(f"conditions.{name}", f"unknown condition; use {allowed}") from None
        if not isinstance(value, str) or not value.strip():
            raise SuppressionError(f"conditions.{name}", "needs a non-empty value")
        if not _COLUMNS[f][1] and any(ch in value for ch in "*?["):
            raise SuppressionError(
                f"conditions.{name}", "wildcards are allowed only in names, paths, URLs and command lines"
            )
        out.append(Condition(f, value.strip()))
    return tuple(out)


def first_applicable(
    rules: Iterable[SuppressionRule], title: str, machine_id: str | None, evidence: Iterable[Mapping[str, Any]]
) -> SuppressionRule | None:
    items = list(evidence)
    for rule in rules:
        if rule.applies(title, machine_id, items):
            return rule
    return None
