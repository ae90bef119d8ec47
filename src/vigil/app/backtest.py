"""Back-testing and retro-hunts: Sigma rules run over the stored telemetry of the last N days, within the
caller's device groups, counting the alerts they would have raised (``vigil.hunt.backtest``).

The rows are read back from the store in the order the agents sent them and go through the rule set's compiled
matchers, the same ones live detection uses: no second implementation of Sigma.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from vigil.app.errors import InvalidInput
from vigil.app.ports import AuditRecord, Store
from vigil.app.principal import Principal
from vigil.core.clock import Clock
from vigil.core.rbac import Permission
from vigil.core.telemetry import TABLES
from vigil.detect import RuleSet
from vigil.hunt.backtest import Backtest

MAX_DAYS = 180


class HistoryReader(Protocol):
    def count(self, tables: Sequence[str], since: datetime, group_ids: frozenset[int] | None) -> int: ...

    def rows(self, tables: Sequence[str], since: datetime,
             group_ids: frozenset[int] | None) -> Iterator[tuple[str, Mapping[str, Any]]]: ...


def backtest(store: Store, history: HistoryReader, clock: Clock, who: Principal, ruleset: RuleSet,
             rule_ids: Iterable[str] | None, days: int,
             progress: Callable[[int, int | None], None] | None = None) -> dict[str, Any]:
    """The summary: events read, alerts per rule and device with samples, the rate; audited as rules.backtest."""
    who.require(Permission.VIEW_DATA_SECOPS)
    if not 1 <= days <= MAX_DAYS:
        raise InvalidInput(f"--days: between 1 and {MAX_DAYS}", field="days")
    ids = list(rule_ids) if rule_ids is not None else None
    if ids is not None:
        known = {r.id for r in ruleset.rules}
        missing = [i for i in ids if i not in known]
        if missing:
            raise InvalidInput(f"no rule with id {missing[0]!r} in the rule set", field="rule")
    now = clock.now()
    since = now - timedelta(days=days)
    tables = sorted(TABLES)
    total = history.count(tables, since, who.device_group_ids)
    bt = Backtest(ruleset, ids)
    started = time.perf_counter()
    bt.run(history.rows(tables, since, who.device_group_ids), total, progress)
    seconds = time.perf_counter() - started
    out = {"days": days, "since": since.isoformat(), **bt.summary(), "seconds": round(seconds, 3),
           "eventsPerSecond": round(bt.events / seconds) if seconds > 0 else None}
    with store.begin() as uow:
        uow.audit.append(AuditRecord(who.actor, "rules.backtest", "rule", ",".join(ids or ["*"])[:200], after={
            "days": days, "events": bt.events, "alerts": out["alerts"]}, source_ip=who.source_ip), now)
    return out
