"""Antivirus policy per device group, and the bundles the server hands to each group's agents.

A policy sets any of: real-time protection on/off (``realtime``), the mode (``auto``, ``block``, ``audit``,
``passive``), plain opens scanned too (``open_perm``), exclusions (by kind, as in ``exclusions``) and scheduled
scans (``scans``: ``{"type": "quick"|"full", "at": "HH:MM", "days": ["mon", ...]}``, the device's local time,
every day when ``days`` is absent), what to do per threat type (``threat_actions``: ``{"malware"|"pua"|"test"|
"heuristic": "quarantine"|"remove"|"audit"|"allow"}``, quarantine when unset), PUA protection (``pua_mode``:
``off`` ignores PUA, ``audit`` only reports it, ``block`` treats it by ``threat_actions``; block when unset) and
threats allowed by name (``allowed_threats``: neither reported nor touched). The server keeps a global policy
and one per device group (the store's ``av_policies``); a device gets ``effective(global, group)``: each setting
the group sets wins over the global one (per threat type for ``threat_actions``), exclusions and allowed
threats are the union of both (exclusions: and of the endpoint's own), scheduled scans are the group's when it
names any, else the global ones. The agent's own settings apply where neither sets one. ``reaction`` says what
one threat gets; block mode carries it out, audit and passive only report.

Bundles: ``<data dir>/av/bundles/default.vab`` for every device, or the group's own
(``group-<hex of the name>.vab``) when one is published for it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vigil.av.exclusions import KINDS, ExclusionError, Exclusions, merge

SCAN_TYPES = ("quick", "full")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MODES = ("auto", "block", "audit", "passive")
_AT = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
THREAT_TYPES = ("malware", "pua", "test", "heuristic")
ACTIONS = ("quarantine", "remove", "audit", "allow")
PUA_MODES = ("off", "audit", "block")
_KEYS = ("realtime", "mode", "open_perm", "exclusions", "scans", "threat_actions", "pua_mode", "allowed_threats")


class PolicyError(ValueError):
    """A policy that cannot be used; names where (global, a group) and the field."""


@dataclass(frozen=True)
class ScheduledScan:
    type: str
    at: str  # HH:MM
    days: tuple[str, ...] = DAYS

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "at": self.at, "days": list(self.days)}

    def due(self, weekday: int, hhmm: str) -> bool:
        """True in the minute the scan is set for (``weekday``: Monday is 0)."""
        return hhmm == self.at and DAYS[weekday] in self.days


@dataclass(frozen=True)
class AvPolicy:
    realtime: bool | None = None
    mode: str | None = None
    open_perm: bool | None = None
    exclusions: Exclusions = field(default_factory=Exclusions)
    scans: tuple[ScheduledScan, ...] = ()
    threat_actions: tuple[tuple[str, str], ...] = ()  # (threat type, action), sorted
    pua_mode: str | None = None
    allowed_threats: tuple[str, ...] = ()

    def action_for(self, threat_type: str) -> str | None:
        return dict(self.threat_actions).get(threat_type)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in ("realtime", "mode", "open_perm")
                               if getattr(self, k) is not None}
        if self.exclusions:
            out["exclusions"] = {k: v for k, v in self.exclusions.as_lists().items() if v}
        if self.scans:
            out["scans"] = [s.as_dict() for s in self.scans]
        if self.threat_actions:
            out["threat_actions"] = dict(self.threat_actions)
        if self.pua_mode is not None:
            out["pua_mode"] = self.pua_mode
        if self.allowed_threats:
            out["allowed_threats"] = list(self.allowed_threats)
        return out


def parse_policy(raw: Any, where: str) -> AvPolicy:
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where}: expected an object")
    unknown = sorted(set(raw) - set(_KEYS))
    if unknown:
        raise PolicyError(f"{where}.{unknown[0]}: unknown setting (known: {', '.join(_KEYS)})")
    for key in ("realtime", "open_perm"):
        if key in raw and not isinstance(raw[key], bool):
            raise PolicyError(f"{where}.{key}: expected true or false")
    mode = raw.get("mode")
    if mode is not None and mode not in MODES:
        raise PolicyError(f"{where}.mode: {mode!r} is not one of {', '.join(MODES)}")
    ex = raw.get("exclusions") or {}
    if not isinstance(ex, Mapping) or not all(isinstance(v, list) for v in ex.values()):
        raise PolicyError(f"{where}.exclusions: expected an object of kind → list ({', '.join(KINDS)})")
    try:
        exclusions = Exclusions.of(ex)
    except ExclusionError as e:
        raise PolicyError(f"{where}.exclusions: {e}") from None
    scans = []
    for i, s in enumerate(raw.get("scans") or []):
        at = f"{where}.scans[{i}]"
        if not isinstance(s, Mapping):
            raise PolicyError(f"{at}: expected an object with type and at")
        if s.get("type") not in SCAN_TYPES:
            raise PolicyError(f"{at}.type: expected quick or full, got {s.get('type')!r}")
        if not isinstance(s.get("at"), str) or not _AT.match(s["at"]):
            raise PolicyError(f"{at}.at: expected HH:MM (24 hours), got {s.get('at')!r}")
        days = s.get("days", list(DAYS))
        if not isinstance(days, list) or not days or any(d not in DAYS for d in days):
            raise PolicyError(f"{at}.days: expected some of {', '.join(DAYS)}")
        scans.append(ScheduledScan(s["type"], s["at"], tuple(d for d in DAYS if d in days)))
    actions = raw.get("threat_actions") or {}
    if not isinstance(actions, Mapping):
        raise PolicyError(f"{where}.threat_actions: expected an object of threat type → action")
    for kind, action in actions.items():
        if kind not in THREAT_TYPES:
            raise PolicyError(f"{where}.threat_actions.{kind}: unknown threat type (known: {', '.join(THREAT_TYPES)})")
        if action not in ACTIONS:
            raise PolicyError(f"{where}.threat_actions.{kind}: {action!r} is not one of {', '.join(ACTIONS)}")
    pua = raw.get("pua_mode")
    if pua is not None and pua not in PUA_MODES:
        raise PolicyError(f"{where}.pua_mode: {pua!r} is not one of {', '.join(PUA_MODES)}")
    allowed = raw.get("allowed_threats") or []
    if not isinstance(allowed, list) or not all(isinstance(n, str) and n.strip() for n in allowed):
        raise PolicyError(f"{where}.allowed_threats: expected a list of threat names, e.g. [\"PUA:Linux/Miner\"]")
    return AvPolicy(raw.get("realtime"), mode, raw.get("open_perm"), exclusions, tuple(scans),
                    tuple(sorted(actions.items())), pua, tuple(sorted({n.strip() for n in allowed})))


def reaction(policy: AvPolicy, threat_name: str, threat_type: str) -> str:
    """What ``policy`` does with one threat: ``allow`` (ignored), ``audit`` (reported), ``quarantine`` or
    ``remove``. Allowed names come first, then PUA protection for PUA, then the threat type's action."""
    if threat_name in policy.allowed_threats:
        return "allow"
    if threat_type == "pua":
        pua = policy.pua_mode or "block"
        if pua == "off":
            return "allow"
        if pua == "audit":
            return "audit"
    return policy.action_for(threat_type) or "quarantine"


def effective(global_: AvPolicy, group: AvPolicy | None) -> AvPolicy:
    if group is None:
        return global_
    return AvPolicy(
        realtime=group.realtime if group.realtime is not None else global_.realtime,
        mode=group.mode if group.mode is not None else global_.mode,
        open_perm=group.open_perm if group.open_perm is not None else global_.open_perm,
        exclusions=merge(global_.exclusions, group.exclusions),
        scans=group.scans or global_.scans,
        threat_actions=tuple(sorted((dict(global_.threat_actions) | dict(group.threat_actions)).items())),
        pua_mode=group.pua_mode if group.pua_mode is not None else global_.pua_mode,
        allowed_threats=tuple(sorted(set(global_.allowed_threats) | set(group.allowed_threats))),
    )


class BundleShelf:
    """The bundles the server serves: one for every device, and per device group when published."""

    def __init__(self, data_dir: Path) -> None:
        self.folder = data_dir / "av" / "bundles"

    def path(self, group: str | None) -> Path:
        return self.folder / (f"group-{group.encode().hex()}.vab" if group else "default.vab")

    def for_group(self, group: str | None) -> Path | None:
        """The group's bundle if it has one, else the default one, else None."""
        for p in ((self.path(group),) if group else ()) + (self.path(None),):
            if p.is_file():
                return p
        return None

    def publish(self, data: bytes, group: str | None) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.path(group)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        return target
