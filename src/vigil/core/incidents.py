"""Incident correlation: which alerts belong together, and what the incident is called."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from vigil.core.severity import Severity

# Alerts on one device this close together are one incident, as are alerts sharing an entity.
DEVICE_WINDOW = timedelta(hours=6)
ENTITY_WINDOW = timedelta(hours=24)

# Accounts too common to tie alerts together: on Linux nearly everything runs as one of these.
_COMMON_ACCOUNTS = frozenset({"root", "nobody", "daemon", "www-data", "systemd-network", "messagebus"})
# A shell or coreutils binary would tie every alert on every host together; files there are no evidence.
_SYSTEM_DIRS = ("/usr/bin/", "/bin/", "/usr/sbin/", "/sbin/", "/usr/lib/", "/lib/", "/usr/libexec/")
_HASHED_PATHS = (("SHA256", "FolderPath"), ("InitiatingProcessSHA256", "InitiatingProcessFolderPath"))
_SEVERITY_RANK = {s: i for i, s in enumerate((Severity.INFORMATIONAL, Severity.LOW, Severity.MEDIUM, Severity.HIGH))}


class IncidentStatus(StrEnum):
    ACTIVE = "Active"
    RESOLVED = "Resolved"
    REDIRECTED = "Redirected"  # merged into another incident


class EntityKind(StrEnum):
    FILE = "FileHash"
    IP = "Ip"
    URL = "Url"
    USER = "User"


@dataclass(frozen=True, order=True)
class Entity:
    kind: EntityKind
    value: str


def entities_of(evidence: Iterable[Mapping[str, Any]]) -> frozenset[Entity]:
    """Entities that can tie alerts together: file hashes, remote addresses, host names, users."""
    found: set[Entity] = set()
    for ev in evidence:
        for hash_col, path_col in _HASHED_PATHS:
            if ev.get(hash_col) and not str(ev.get(path_col) or "").startswith(_SYSTEM_DIRS):
                found.add(Entity(EntityKind.FILE, str(ev[hash_col]).lower()))
        ip = ev.get("RemoteIP")
        if ip and not str(ip).startswith(("127.", "::1")):
            found.add(Entity(EntityKind.IP, str(ip)))
        if ev.get("RemoteUrl"):
            found.add(Entity(EntityKind.URL, str(ev["RemoteUrl"]).lower()))
        for col in ("AccountName", "InitiatingProcessAccountName"):
            user = ev.get(col)
            if user and str(user) not in _COMMON_ACCOUNTS:
                found.add(Entity(EntityKind.USER, str(user)))
    return frozenset(found)


@dataclass(frozen=True)
class IncidentView:
    """What correlation needs to know about an open incident."""

    id: int
    devices: frozenset[str]
    entities: frozenset[Entity]
    last_activity: datetime


def find_incident(
    incidents: Iterable[IncidentView], device_id: str | None, entities: frozenset[Entity], event_time: datetime
) -> IncidentView | None:
    """The open incident a new alert joins: same device within DEVICE_WINDOW, or a shared entity
    within ENTITY_WINDOW; the most recently active wins. An identity alert (no device) joins by entity only."""
    best: IncidentView | None = None
    for inc in incidents:
        gap = abs(event_time - inc.last_activity)
        same_device = device_id is not None and device_id in inc.devices and gap <= DEVICE_WINDOW
        shared = bool(entities & inc.entities) and gap <= ENTITY_WINDOW
        if (same_device or shared) and (best is None or inc.last_activity > best.last_activity):
            best = inc
    return best


def max_severity(severities: Iterable[str]) -> str:
    ranked = [Severity(s) for s in severities]
    return max(ranked, key=_SEVERITY_RANK.__getitem__).value if ranked else Severity.INFORMATIONAL.value


def incident_name(categories: Iterable[str], device_names: Iterable[str], sources: Iterable[str]) -> str:
    """Defender-style generated names, e.g. "Multi-stage incident on multiple endpoints"."""
    cats = sorted(set(categories))
    devices = sorted(set(device_names))
    srcs = set(sources)
    stage = f"{cats[0]} incident" if len(cats) == 1 else "Multi-stage incident" if cats else "Incident"
    # Identity alerts alone are on no endpoint.
    where = f" on {devices[0]}" if len(devices) == 1 else " on multiple endpoints" if devices else ""
    name = f"{stage}{where}"
    if len(srcs) > 1:
        name += " reported by multiple sources"
    elif len(cats) > 1:
        name += f" involving {' & '.join(cats[:3])}" + (" and more" if len(cats) > 3 else "")
    return name
