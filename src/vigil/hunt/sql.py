"""Hunting SQL: parse an analyst's query with sqlglot, refuse anything but one read-only SELECT over the
declared telemetry tables, rewrite every table reference to the caller's device-group scope, cap its rows,
and transpile it to the store's dialect (SQLite or PostgreSQL).

Pure: no store, no driver. The service runs the SQL this returns.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from vigil.core.telemetry import ColumnType, Table
from vigil.core.tvm_schema import HUNTING_TABLES as TABLES

DIALECTS = ("sqlite", "postgres")
MAX_QUERY_CHARS = 30_000
# The control-plane table the scope filter reads; no user name may shadow it.
_DEVICES = "devices"

# Functions a query may call besides those sqlglot knows as standard expressions: string, number, date and
# JSON helpers. Anything else (load_extension, readfile, pg_read_file, lo_export, dblink, set_config...) is refused.
ALLOWED_FUNCTIONS = frozenset({
    "abs", "avg", "ceil", "ceiling", "coalesce", "count", "date", "datetime", "floor", "group_concat", "ifnull",
    "instr", "julianday", "length", "lower", "ltrim", "max", "min", "nullif", "printf", "replace", "round",
    "rtrim", "strftime", "string_agg", "substr", "substring", "sum", "total", "trim", "unixepoch", "upper",
    "json_extract", "json_array_length", "split_part", "strpos", "position", "concat", "left", "right",
    "date_trunc", "extract", "to_char", "to_timestamp", "now", "array_agg", "bool_or", "bool_and",
})
# Name prefixes never allowed, even when sqlglot has a typed expression for them.
_REFUSED_PREFIXES = ("pg_", "sqlite_", "lo_", "dblink", "load_extension", "readfile", "writefile", "fts3",
                     "set_config", "current_setting", "query_to_xml", "copy", "edit")


class HuntError(ValueError):
    """A query Vigil refuses; ``where`` names the place (line:column or the clause)."""

    def __init__(self, problem: str, where: str = "query") -> None:
        super().__init__(f"{where}: {problem}")
        self.problem, self.where = problem, where


@dataclass(frozen=True)
class Scope:
    """The device groups a caller may see (None: every group)."""

    device_group_ids: frozenset[int] | None = None


@dataclass(frozen=True)
class CheckedQuery:
    sql: str  # in the target dialect, scoped and limited
    dialect: str
    tables: tuple[str, ...]  # the telemetry tables it reads
    limit: int  # the LIMIT applied (max_rows + 1 unless the query asked for fewer)


def _where(node: exp.Expr) -> str:
    meta = getattr(node, "meta", None) or {}
    if "line" in meta:
        return f"line {meta['line']}, column {meta.get('col', '?')}"
    this = node.this if isinstance(node.this, exp.Expr) else None
    if this is not None and this is not node:
        meta = getattr(this, "meta", None) or {}
        if "line" in meta:
            return f"line {meta['line']}, column {meta.get('col', '?')}"
    return f"near {node.sql()[:60]!r}"


_TABLES_CI: Mapping[str, Table] = {name.lower(): t for name, t in TABLES.items()}
_COLUMNS_CI: Mapping[str, str] = {c.name.lower(): c.name for t in TABLES.values() for c in t.columns}


def column_type(name: str) -> ColumnType | None:
    """The declared type of a telemetry column name (the same name has one type in every table)."""
    canon = _COLUMNS_CI.get(name.lower())
    if canon is None:
        return None
    for t in TABLES.values():
        if canon in t.column_names:
            return t.column(canon).type
    return None


_ALLOWED_STATEMENTS = (exp.Select, exp.Union, exp.Intersect, exp.Except)
_REFUSED_NODES: dict[type[exp.Expr], str] = {
    exp.Insert: "INSERT", exp.Update: "UPDATE", exp.Delete: "DELETE", exp.Drop: "DROP", exp.Create: "CREATE",
    exp.Alter: "ALTER", exp.Command: "a command", exp.Pragma: "PRAGMA", exp.Attach: "ATTACH",
    exp.Detach: "DETACH", exp.Into: "SELECT ... INTO", exp.Lock: "FOR UPDATE/SHARE", exp.Merge: "MERGE",
    exp.Set: "SET", exp.Transaction: "a transaction", exp.Commit: "COMMIT", exp.Rollback: "ROLLBACK",
    exp.Lateral: "LATERAL", exp.Unnest: "UNNEST", exp.Placeholder: "a parameter placeholder",
    exp.Parameter: "a parameter", exp.Copy: "COPY", exp.TruncateTable: "TRUNCATE",
}


def _visible_ctes(node: exp.Expr) -> set[str]:
    """CTE names visible at ``node``: outer WITHs, and within one WITH only the CTEs before the current one."""
    names: set[str] = set()
    child: exp.Expr = node
    parent = node.parent
    while parent is not None:
        if isinstance(parent, exp.With):
            for cte in parent.expressions:
                if cte is child:
                    break
                names.add(cte.alias_or_name.lower())
        else:
            with_ = parent.args.get("with_") or parent.args.get("with")
            if isinstance(with_, exp.With) and child is not with_:
                names.update(c.alias_or_name.lower() for c in with_.expressions)
        child, parent = parent, parent.parent
    return names


def _scope_filter(scope: Scope) -> exp.Expr:
    if scope.device_group_ids is None:
        return exp.true()
    if not scope.device_group_ids:
        return exp.false()
    groups = ", ".join(str(int(g)) for g in sorted(scope.device_group_ids))
    return sqlglot.parse_one(f'"DeviceId" IN (SELECT "id" FROM "{_DEVICES}" WHERE "group_id" IN ({groups}))')


def check(query: str, scope: Scope, dialect: str = "sqlite", max_rows: int = 10_000) -> CheckedQuery:
    """The scoped, limited SQL for ``query`` in ``dialect``; raises HuntError naming what is wrong and where."""
    if dialect not in DIALECTS:
        raise HuntError(f"unknown dialect {dialect!r}; use one of {', '.join(DIALECTS)}", "dialect")
    if not query or not query.strip():
        raise HuntError("the query is empty")
    if len(query) > MAX_QUERY_CHARS:
        raise HuntError(f"the query is {len(query)} characters; at most {MAX_QUERY_CHARS} are accepted")
    try:
        statements = [s for s in sqlglot.parse(query, read="sqlite") if s is not None]
    except (ParseError, TokenError) as e:
        errs = getattr(e, "errors", None) or []
        if errs:
            first = errs[0]
            raise HuntError(f"syntax error: {first.get('description')}",
                            f"line {first.get('line')}, column {first.get('col')}") from None
        raise HuntError(f"syntax error: {e}") from None
    if len(statements) != 1:
        raise HuntError(f"one statement is accepted, found {len(statements)}")
    tree = statements[0]
    if not isinstance(tree, _ALLOWED_STATEMENTS):
        raise HuntError(f"only SELECT is accepted, not {tree.key.upper()}", _where(tree))
    for node in tree.walk():
        for cls, what in _REFUSED_NODES.items():
            if isinstance(node, cls):
                raise HuntError(f"{what} is not allowed in a hunting query", _where(node))
        if isinstance(node, exp.With) and node.args.get("recursive"):
            raise HuntError("WITH RECURSIVE is not allowed", _where(node))
        if isinstance(node, exp.Func):
            name = (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()
            if name.startswith(_REFUSED_PREFIXES) or (isinstance(node, exp.Anonymous)
                                                      and name not in ALLOWED_FUNCTIONS):
                raise HuntError(f"function {name}() is not allowed", _where(node))
        if isinstance(node, exp.CTE):
            alias = node.alias_or_name.lower()
            if alias in _TABLES_CI or alias == _DEVICES:
                raise HuntError(f"the CTE name {node.alias_or_name!r} shadows a table; choose another name",
                                _where(node))
    cte_names = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    known_aliases = {a.alias.lower() for a in tree.find_all(exp.Alias)} | cte_names
    known_aliases |= {t.name.lower() for t in tree.find_all(exp.TableAlias) if t.name}
    for ta in tree.find_all(exp.TableAlias):
        known_aliases |= {c.name.lower() for c in ta.columns}
    for col in tree.find_all(exp.Column):
        if isinstance(col.this, exp.Star):
            continue
        lname = col.name.lower()
        canon = _COLUMNS_CI.get(lname)
        if canon is not None:
            col.set("this", exp.to_identifier(canon, quoted=True))
        elif lname not in known_aliases:
            raise HuntError(f"unknown column {col.name!r}", _where(col))
        if col.table:
            col.set("table", exp.to_identifier(col.table.lower(), quoted=True))
    read: list[str] = []
    for table in list(tree.find_all(exp.Table)):
        if table.args.get("db") or table.args.get("catalog"):
            raise HuntError(f"schema-qualified table {table.sql()!r} is not allowed", _where(table))
        if not isinstance(table.this, exp.Identifier):
            raise HuntError(f"{table.this.sql()!r} is not a table; only the telemetry tables can be read",
                            _where(table))
        name = table.name.lower()
        if name in cte_names and name in _visible_ctes(table):
            table.set("this", exp.to_identifier(name, quoted=True))
            if table.alias:
                table.set("alias", exp.TableAlias(this=exp.to_identifier(table.alias.lower(), quoted=True)))
            continue
        decl = _TABLES_CI.get(name)
        if decl is None:
            raise HuntError(f"unknown table {table.name!r}; the tables are {', '.join(TABLES)}", _where(table))
        read.append(decl.name)
        alias = (table.alias or decl.name).lower()
        inner = exp.select("*").from_(exp.Table(this=exp.to_identifier(decl.name, quoted=True)))
        flt = _scope_filter(scope)
        if scope.device_group_ids is not None:
            inner = inner.where(flt)
        table.replace(exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier(alias, quoted=True))))
    for ta in list(tree.find_all(exp.TableAlias)):
        if ta.name and isinstance(ta.this, exp.Identifier):
            ta.set("this", exp.to_identifier(ta.name.lower(), quoted=True))
    limit = max_rows + 1
    existing = tree.args.get("limit")
    if existing is not None:
        value = existing.expression if isinstance(existing, exp.Limit) else existing
        if not (isinstance(value, exp.Literal) and value.is_int):
            raise HuntError("LIMIT must be a whole number", _where(existing))
        limit = min(limit, int(value.this))
    tree.set("limit", exp.Limit(expression=exp.Literal.number(limit)))
    sql = tree.sql(dialect=dialect, comments=False)  # nothing of the text survives but the checked tree
    return CheckedQuery(sql, dialect, tuple(dict.fromkeys(read)), limit)


class QueryRate:
    """Queries per minute per user: a sliding one-minute window, in memory (per server process)."""

    def __init__(self, per_minute: int, now: Callable[[], float]) -> None:
        self.per_minute, self._now = per_minute, now
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def admit(self, user: str) -> bool:
        """True, counting the query, unless ``user`` already ran ``per_minute`` queries in the last minute."""
        t = self._now()
        with self._lock:
            q = self._seen.setdefault(user, deque())
            while q and q[0] <= t - 60.0:
                q.popleft()
            if len(q) >= self.per_minute:
                return False
            q.append(t)
            if len(self._seen) > 100_000:  # bound the memory: forget users idle for a minute
                for k in [k for k, v in self._seen.items() if not v or v[-1] <= t - 60.0]:
                    del self._seen[k]
            return True
