"""ASR services: the rule catalogue and the what-if replay of one rule over stored telemetry.

The replay reads through the advanced-hunting service (the same permission, device-group scope, row quota and
``hunt.run`` audit), so a caller sees only the devices they may see; the rule is replayed as if in Block mode with
no exclusions (policies are not stored yet).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from vigil.app import hunting
from vigil.app.errors import InvalidInput, NotFound
from vigil.app.hunting import HuntRunner
from vigil.app.ports import Store
from vigil.app.principal import Principal
from vigil.asr import AsrRule, UnknownAsrRule, catalogue, find
from vigil.core.clock import Clock
from vigil.core.rbac import Permission

MAX_DAYS = 180


@dataclass(frozen=True)
class WhatIfHit:
    device_id: str
    device_name: str
    process: str  # the executable started (process rules) or the writing process (file rules)
    command_line: str
    target: str  # the file written (file rules); the executable again for process rules
    count: int
    first_seen: str
    last_seen: str


@dataclass(frozen=True)
class WhatIf:
    rule: AsrRule
    days: int
    rows_scanned: int
    truncated: bool
    hits: tuple[WhatIfHit, ...]

    @property
    def total(self) -> int:
        return sum(h.count for h in self.hits)


def rules(principal: Principal) -> list[AsrRule]:
    principal.require(Permission.VIEW_DATA_SECOPS)
    return catalogue()


def rule(principal: Principal, ref: str) -> AsrRule:
    principal.require(Permission.VIEW_DATA_SECOPS)
    try:
        return find(ref)
    except UnknownAsrRule as e:
        raise NotFound(str(e)) from None


def whatif(store: Store, runner: HuntRunner, clock: Clock, principal: Principal, ref: str, days: int) -> WhatIf:
    """What a Block of rule ``ref`` would have stopped over the last ``days`` days of telemetry."""
    principal.require(Permission.VIEW_DATA_SECOPS)
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_DAYS:
        raise InvalidInput(f"days must be a whole number from 1 to {MAX_DAYS}, not {days!r}", field="days")
    entry = rule(principal, ref)
    since = clock.now() - timedelta(days=days)
    stamp = since.strftime("%Y-%m-%d %H:%M:%S")
    query = f"SELECT * FROM {entry.table} WHERE Timestamp >= '{stamp}' ORDER BY Timestamp"
    result = hunting.run_query(store, runner, clock, principal, query)
    counts: Counter[tuple[str, str, str, str, str]] = Counter()
    seen: dict[tuple[str, str, str, str, str], list[str]] = {}
    for row in result.results:
        if not entry.matches(entry.table, row):
            continue
        key = _key(entry, row)
        counts[key] += 1
        stamp_text = str(row.get("Timestamp") or "")
        first_last = seen.setdefault(key, [stamp_text, stamp_text])
        first_last[0], first_last[1] = min(first_last[0], stamp_text), max(first_last[1], stamp_text)
    hits = tuple(
        WhatIfHit(k[0], k[1], k[2], k[3], k[4], n, seen[k][0], seen[k][1])
        for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    )
    return WhatIf(entry, days, len(result.results), result.truncated, hits)


def _key(entry: AsrRule, row: dict[str, Any]) -> tuple[str, str, str, str, str]:
    device = (str(row.get("DeviceId") or ""), str(row.get("DeviceName") or ""))
    if entry.table == "DeviceFileEvents":
        process = str(row.get("InitiatingProcessFolderPath") or row.get("InitiatingProcessFileName") or "")
        return (*device, process, str(row.get("InitiatingProcessCommandLine") or ""), str(row.get("FolderPath") or ""))
    process = str(row.get("FolderPath") or row.get("FileName") or "")
    return (*device, process, str(row.get("ProcessCommandLine") or ""), process)
