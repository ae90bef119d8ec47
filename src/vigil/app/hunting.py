"""Advanced hunting: run an analyst's read-only query over the telemetry, within their device groups.

``vigil.hunt.sql`` checks and scopes the query; a ``HuntRunner`` (``vigil.store.hunt`` on SQLAlchemy) runs it
read-only with a time quota; this service checks the permission, applies the quotas and audits the run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from vigil.app.errors import InvalidInput
from vigil.app.ports import AuditRecord, Store
from vigil.app.principal import Principal
from vigil.core.clock import Clock
from vigil.core.rbac import Permission
from vigil.core.telemetry import ColumnType
from vigil.hunt import kql
from vigil.hunt.sql import HuntError, QueryRate, Scope, check, column_type

MAX_ROWS = 10_000  # Defender's advanced-hunting row limit
TIMEOUT_S = 30.0
PER_MINUTE = 60  # queries per minute per user
# The server's one rate limiter (per process); tests pass their own.
RATE = QueryRate(PER_MINUTE, time.monotonic)
# Defender's schema types for a column: the declared type of a telemetry column, else from the values.
_TYPE_NAMES = {
    ColumnType.STRING: "String", ColumnType.INT: "Int32", ColumnType.LONG: "Int64", ColumnType.BOOL: "Boolean",
    ColumnType.DATETIME: "DateTime", ColumnType.DYNAMIC: "Dynamic", ColumnType.REAL: "Double",
}


class QueryTimeout(Exception):
    """The runner stopped the query at its time quota."""


class TooManyQueries(InvalidInput):
    """The caller ran their queries-per-minute quota; the API answers 429."""


class QueryFailed(Exception):
    """The database refused the (already checked) query, e.g. a type error; the message says why."""


class HuntRunner(Protocol):
    dialect: str  # "sqlite" or "postgres"

    def run(self, sql: str, timeout_s: float) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Column names and rows of ``sql``, read-only; raises QueryTimeout or QueryFailed."""
        ...


@dataclass(frozen=True)
class HuntResult:
    schema: list[dict[str, str]]  # [{"Name", "Type"}]
    results: list[dict[str, Any]]
    truncated: bool
    sql: str


def _iso(v: Any) -> Any:
    if isinstance(v, datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=UTC)
        return v.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(v, str):
        try:
            d = datetime.fromisoformat(v)
        except ValueError:
            return v
        return _iso(d)
    return v


def _normal(value: Any, ctype: ColumnType | None) -> Any:
    """One value as both databases give it the same: datetimes as ISO text, booleans as booleans."""
    if value is None:
        return None
    if ctype is ColumnType.DATETIME or isinstance(value, datetime):
        return _iso(value)
    if ctype is ColumnType.BOOL and isinstance(value, int):
        return bool(value)
    if ctype is ColumnType.DYNAMIC and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    if isinstance(value, float) and value.is_integer() and ctype in (ColumnType.INT, ColumnType.LONG):
        return int(value)
    if type(value).__name__ == "Decimal":
        return int(value) if value == int(value) else float(value)
    return value


# The custom detections read results as the API shows them.
normal = _normal


def _type_name(ctype: ColumnType | None, values: Sequence[Any]) -> str:
    if ctype is not None:
        return _TYPE_NAMES[ctype]
    for v in values:
        if isinstance(v, bool):
            return "Boolean"
        if isinstance(v, int):
            return "Int64"
        if isinstance(v, float):
            return "Double"
        if v is not None:
            return "String"
    return "String"


def run_query(
    store: Store, runner: HuntRunner, clock: Clock, principal: Principal, query: str,
    max_rows: int = MAX_ROWS, timeout_s: float = TIMEOUT_S, rate: QueryRate | None = RATE,
) -> HuntResult:
    """Check, scope and run ``query`` (SQL, or the KQL subset) for ``principal``; audited as ``hunt.run``."""
    principal.require(Permission.VIEW_DATA_SECOPS)
    if not isinstance(query, str):
        raise InvalidInput("Query must be a string", field="Query")
    if rate is not None and not rate.admit(principal.username or principal.actor):
        raise TooManyQueries(f"at most {rate.per_minute} hunting queries a minute; wait a little", field="Query")
    language = "kql" if kql.looks_like_kql(query) else "sql"
    try:
        sql = kql.to_sql(query, clock.now(), runner.dialect) if language == "kql" else query
        checked = check(sql, Scope(principal.device_group_ids), runner.dialect, max_rows)
    except HuntError as e:
        raise InvalidInput(str(e), field="Query") from None
    try:
        names, rows = runner.run(checked.sql, timeout_s)
    except QueryTimeout:
        raise InvalidInput(f"the query ran longer than its {timeout_s:g} s quota; narrow it (a Timestamp range,"
                           " fewer joins)", field="Query") from None
    except QueryFailed as e:
        raise InvalidInput(f"the database refused the query: {e}", field="Query") from None
    truncated = len(rows) > max_rows
    rows = rows[:max_rows]
    types = [column_type(n) for n in names]
    results = [{n: _normal(v, t) for n, v, t in zip(names, row, types, strict=True)} for row in rows]
    schema = [{"Name": n, "Type": _type_name(t, [r[n] for r in results])} for n, t in zip(names, types, strict=True)]
    with store.begin() as uow:
        uow.audit.append(AuditRecord(principal.actor, "hunt.run", "query", "advancedqueries",
                                     after={"query": query[:4000], "language": language, "rows": len(results),
                                            "truncated": truncated},
                                     source_ip=principal.source_ip), clock.now())
    return HuntResult(schema, results, truncated, checked.sql)
