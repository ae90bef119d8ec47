"""Device groups: matching rules on name, domain, tag and OS, ranks, and the group a device joins."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

MAX_TAG_LENGTH = 200


class RuleProperty(StrEnum):
    NAME = "name"
    DOMAIN = "domain"
    TAG = "tag"
    OS = "os"


class RuleOperator(StrEnum):
    EQUALS = "equals"
    STARTS_WITH = "startsWith"
    ENDS_WITH = "endsWith"
    CONTAINS = "contains"


class AutomationLevel(StrEnum):
    """The five AIR automation levels a device group carries (used by automated investigation)."""

    FULL = "FullRemediation"
    SEMI_ANY = "SemiRemediation"
    SEMI_CORE_FOLDERS = "SemiRemediationCoreFolders"
    SEMI_NON_TEMP_FOLDERS = "SemiRemediationNonTempFolders"
    NONE = "NoRemediation"


class GroupRuleError(ValueError):
    """A matching rule that cannot be used; ``where`` names the condition and field."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where


@dataclass(frozen=True)
class Condition:
    property: RuleProperty
    operator: RuleOperator
    value: str

    def holds_for(self, candidates: Iterable[str]) -> bool:
        want = self.value.casefold()
        for c in candidates:
            have = c.casefold()
            if (
                (self.operator is RuleOperator.EQUALS and have == want)
                or (self.operator is RuleOperator.STARTS_WITH and have.startswith(want))
                or (self.operator is RuleOperator.ENDS_WITH and have.endswith(want))
                or (self.operator is RuleOperator.CONTAINS and want in have)
            ):
                return True
        return False

    def as_dict(self) -> dict[str, str]:
        return {"property": self.property.value, "operator": self.operator.value, "value": self.value}


@dataclass(frozen=True)
class DeviceFacts:
    name: str
    os_platform: str
    tags: tuple[str, ...]

    @property
    def domain(self) -> str:
        # Linux hosts have no AD domain; the DNS domain of the host name plays its part.
        return self.name.split(".", 1)[1] if "." in self.name else ""

    def values_of(self, prop: RuleProperty) -> tuple[str, ...]:
        if prop is RuleProperty.NAME:
            return (self.name,)
        if prop is RuleProperty.DOMAIN:
            return (self.domain,)
        if prop is RuleProperty.OS:
            return (self.os_platform,)
        return self.tags


@dataclass(frozen=True)
class GroupRule:
    """A device group as matching sees it. The default group has no rank and matches last."""

    group_id: int
    rank: int | None
    conditions: tuple[Condition, ...]
    is_default: bool = False

    def matches(self, device: DeviceFacts) -> bool:
        # An empty rule matches nothing: such a group holds only devices enrolled into it.
        return bool(self.conditions) and all(c.holds_for(device.values_of(c.property)) for c in self.conditions)


def parse_conditions(raw: Any, where: str = "rules") -> tuple[Condition, ...]:
    if not isinstance(raw, list):
        raise GroupRuleError(where, "must be a list of {property, operator, value} conditions")
    out = []
    for i, item in enumerate(raw):
        at = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise GroupRuleError(at, "must be a mapping with property, operator and value")
        try:
            prop = RuleProperty(str(item.get("property")))
        except ValueError:
            raise GroupRuleError(f"{at}.property", f"use one of {', '.join(RuleProperty)}") from None
        try:
            op = RuleOperator(str(item.get("operator", RuleOperator.EQUALS.value)))
        except ValueError:
            raise GroupRuleError(f"{at}.operator", f"use one of {', '.join(RuleOperator)}") from None
        value = item.get("value")
        if not isinstance(value, str) or not value.strip():
            raise GroupRuleError(f"{at}.value", "must be a non-empty string")
        out.append(Condition(prop, op, value.strip()))
    return tuple(out)


def assign_group(device: DeviceFacts, groups: Sequence[GroupRule], enrolled_group_id: int | None) -> int:
    """The id of the group the device joins: the highest-ranked (lowest rank number) that matches.

    A device enrolled with a package for a group counts as matching that group, so an explicit
    onboarding target holds until a higher-ranked rule claims the device.
    """
    default = next((g for g in groups if g.is_default), None)
    if default is None:
        raise LookupError("no default device group")
    ranked = sorted((g for g in groups if not g.is_default and g.rank is not None), key=lambda g: g.rank or 0)
    for g in ranked:
        if g.matches(device) or g.group_id == enrolled_group_id:
            return g.group_id
    return default.group_id


def validate_tag(tag: str) -> str:
    tag = tag.strip()
    if not tag or len(tag) > MAX_TAG_LENGTH or any(ord(ch) < 32 for ch in tag):
        raise GroupRuleError("Value", f"a tag is 1–{MAX_TAG_LENGTH} printable characters")
    return tag
