"""The protection bundle a device applies: its group's ASR policy with the tenant default, and the indicators that
apply to its group; JSON both ways (the server signs it into an ApplyProtectionPolicy command, the agent reads it)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from vigil.asr.indicators import Indicator, IndicatorAction, IndicatorSet, IndicatorType, normalize
from vigil.asr.model import AsrPolicy, AsrPolicySet

VERSION = 1


@dataclass(frozen=True)
class Bundle:
    group_id: int | None
    policies: AsrPolicySet
    indicators: tuple[Indicator, ...]
    # Which server-side versions it was built from, for the device to report what it applies.
    revision: str = ""

    def indicator_set(self) -> IndicatorSet:
        return IndicatorSet(self.indicators)


def indicator_json(ind: Indicator) -> dict[str, Any]:
    return {"id": ind.id, "indicatorType": ind.indicator_type.value, "indicatorValue": ind.indicator_value,
            "action": ind.action.value, "title": ind.title, "severity": ind.severity,
            "expirationTime": ind.expiration_time.isoformat() if ind.expiration_time else None,
            "generateAlert": ind.generate_alert}


def to_json(group_id: int | None, default: AsrPolicy, group: AsrPolicy | None, indicators: Iterable[Indicator],
            revision: str) -> dict[str, Any]:
    return {"Version": VERSION, "GroupId": group_id, "Revision": revision, "Default": default.to_json(),
            "Group": group.to_json() if group else None, "Indicators": [indicator_json(i) for i in indicators]}


def from_json(data: Mapping[str, Any]) -> Bundle:
    """The bundle from its JSON; a ValueError naming the field otherwise (the agent refuses a bad bundle whole)."""
    if data.get("Version") != VERSION:
        raise ValueError(f"Version {data.get('Version')!r}: this agent reads protection bundles of version {VERSION}")
    group_id = data.get("GroupId")
    if group_id is not None and not isinstance(group_id, int):
        raise ValueError("GroupId must be a device-group id or null")
    default = AsrPolicy.from_json(data.get("Default") or {})
    groups = {group_id: AsrPolicy.from_json(data["Group"])} if data.get("Group") and group_id is not None else {}
    out = []
    for n, item in enumerate(data.get("Indicators") or []):
        try:
            kind = IndicatorType(item["indicatorType"])
            expiry = item.get("expirationTime")
            out.append(Indicator(normalize(kind, str(item["indicatorValue"])), kind,
                                 IndicatorAction(item["action"]), str(item.get("title", "")),
                                 severity=str(item.get("severity", "Informational")),
                                 expiration_time=datetime.fromisoformat(expiry) if expiry else None,
                                 rbac_group_ids=(), generate_alert=bool(item.get("generateAlert")),
                                 id=item.get("id")))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"Indicators[{n}]: {e}") from None
    return Bundle(group_id, AsrPolicySet(default, groups), tuple(out), str(data.get("Revision", "")))
