"""A KQL subset translated to SQL, which then passes the same checks as any hunting SQL (``vigil.hunt.sql``).

Supported: ``Table | where ... | project a, b | extend c = expr | summarize [n =] count()|dcount(c)|min(c)|
max(c), ... [by a, bin(Timestamp, 1h)] | top N by a [asc|desc] | order by a [asc|desc] | take N | limit N``; in
``where``: ==, !=, <, <=, >, >=, has, contains, startswith, endswith (case-insensitive, as KQL's), in (...),
between (a .. b), and, or, not(...), ago(1d|2h|30m|10s), now(); in ``extend``: + - * /, strcat, tolower,
toupper, strlen, bin. ``has`` is matched as ``contains`` (no term index).
Anything else is refused with an error naming the construct and its position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from vigil.hunt.sql import HuntError

_TOKEN = re.compile(r"""\s*(?:(?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")|(?P<span>\d+(?:\.\d+)?(?:d|h|m|s|ms)\b)
    |(?P<num>\d+(?:\.\d+)?)|(?P<op>==|!=|<=|>=|=~|!~|\.\.|[<>=|(),+*/-])
    |(?P<word>[A-Za-z_][A-Za-z0-9_]*|!\w+))""", re.X)
_SPANS = {"d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1), "s": timedelta(seconds=1),
          "ms": timedelta(milliseconds=1)}
_STRING_OPS = {"has": "%{}%", "contains": "%{}%", "startswith": "{}%", "endswith": "%{}"}
_COMPARE = {"==": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


@dataclass
class _Tok:
    kind: str
    text: str
    pos: int


def _tokens(q: str) -> list[_Tok]:
    out, i = [], 0
    while i < len(q):
        if q[i:].strip() == "":
            break
        m = _TOKEN.match(q, i)
        if not m or m.end() == i:
            raise HuntError(f"unexpected character {q[i:].lstrip()[:1]!r}", f"position {i + 1}")
        kind = m.lastgroup or ""
        text = m.group(kind)
        out.append(_Tok(kind, text, m.start(kind) + 1))
        i = m.end()
    return out


def _sql_string(text: str) -> str:
    body = text[1:-1].replace("\\'", "'").replace('\\"', '"')
    return "'" + body.replace("'", "''") + "'"


@dataclass
class _Query:
    source: str
    where: list[str] = field(default_factory=list)
    select: str | None = None
    group: str | None = None
    order: str | None = None
    limit: int | None = None
    n: int = 0

    def sql(self) -> str:
        s = f"SELECT {self.select or '*'} FROM {self.source}"
        if self.where:
            s += " WHERE " + " AND ".join(f"({w})" for w in self.where)
        if self.group:
            s += f" GROUP BY {self.group}"
        if self.order:
            s += f" ORDER BY {self.order}"
        if self.limit is not None:
            s += f" LIMIT {self.limit}"
        return s

    def wrap(self) -> None:
        self.n += 1
        inner = self.sql()
        self.source, self.where, self.select, self.group, self.order, self.limit = (
            f"({inner}) AS k{self.n}", [], None, None, None, None)


def _quote(alias: str) -> str:
    return f'"{alias}"'


class _Parser:
    def __init__(self, q: str, now: datetime, dialect: str = "sqlite") -> None:
        self.toks, self.i, self.now, self.end = _tokens(q), 0, now, len(q) + 1
        self.dialect = dialect

    def span_seconds(self) -> int:
        t = self.take()
        if t.kind != "span":
            raise HuntError(f"expected a timespan like 1h or 1d, not {t.text!r}", f"position {t.pos}")
        num, unit = re.fullmatch(r"([\d.]+)(\w+)", t.text).groups()  # type: ignore[union-attr]
        seconds = int((_SPANS[unit] * float(num)).total_seconds())
        if seconds < 1:
            raise HuntError("bin() takes a timespan of at least 1s", f"position {t.pos}")
        return seconds

    def bin(self) -> tuple[str, str]:
        """``bin(Column, span)`` after its name: (SQL, the column it bins); whole seconds since the epoch."""
        self.take("(")
        col = self.ident()
        self.take(",")
        n = self.span_seconds()
        self.take(")")
        if self.dialect == "postgres":
            return f"TO_TIMESTAMP(FLOOR(EXTRACT(EPOCH FROM {col}) / {n}) * {n})", col
        return f"DATETIME((UNIXEPOCH({col}) / {n}) * {n}, 'unixepoch')", col

    _FUNCTIONS = {"tolower": "LOWER", "toupper": "UPPER", "strlen": "LENGTH"}

    def term(self) -> str:
        t = self.peek()
        nxt = self.toks[self.i + 1] if self.i + 1 < len(self.toks) else None
        if t is not None and t.text == "(":
            self.take()
            inner = self.expr()
            self.take(")")
            return f"({inner})"
        if t is not None and t.kind == "word" and nxt is not None and nxt.text == "(":
            name = t.text.lower()
            if name == "bin":
                self.take()
                return self.bin()[0]
            if name in self._FUNCTIONS or name == "strcat":
                self.take()
                self.take("(")
                args = [self.expr()]
                while self.take().text == ",":
                    args.append(self.expr())
                self.i -= 1
                self.take(")")
                if name == "strcat":
                    return "(" + " || ".join(args) + ")"
                return f"{self._FUNCTIONS[name]}({', '.join(args)})"
            if name not in ("ago", "now"):
                raise HuntError(f"the function {t.text!r} is not supported here (supported: bin, strcat, tolower,"
                                " toupper, strlen, ago, now)", f"position {t.pos}")
        return self.value()

    def expr(self) -> str:
        out = self.term()
        while (t := self.peek()) is not None and t.text in ("+", "-", "*", "/"):
            self.take()
            out = f"{out} {t.text} {self.term()}"
        return out

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, text: str | None = None) -> _Tok:
        t = self.peek()
        if t is None:
            raise HuntError(f"expected {text or 'more'} at the end of the query", f"position {self.end}")
        if text is not None and t.text.lower() != text:
            raise HuntError(f"expected {text!r}, found {t.text!r}", f"position {t.pos}")
        self.i += 1
        return t

    def ident(self) -> str:
        """A column reference, quoted: PostgreSQL would fold an unquoted ``extend`` name to lower case."""
        return _quote(self.name())

    def name(self) -> str:
        t = self.take()
        if t.kind != "word":
            raise HuntError(f"expected a column name, found {t.text!r}", f"position {t.pos}")
        return t.text

    def value(self) -> str:
        t = self.take()
        if t.kind == "str":
            return _sql_string(t.text)
        if t.kind == "num":
            return t.text
        if t.kind == "word" and t.text.lower() in ("ago", "now"):
            self.take("(")
            at = self.now
            if t.text.lower() == "ago":
                span = self.take()
                if span.kind != "span":
                    raise HuntError(f"ago() takes a timespan like 1d or 2h, not {span.text!r}", f"position {span.pos}")
                num, unit = re.fullmatch(r"([\d.]+)(\w+)", span.text).groups()  # type: ignore[union-attr]
                at = self.now - _SPANS[unit] * float(num)
            self.take(")")
            return "'" + at.strftime("%Y-%m-%d %H:%M:%S.%f") + "+00:00'"
        if t.kind == "word" and t.text.lower() in ("true", "false"):
            return t.text.upper()
        if t.kind == "word":
            return _quote(t.text)
        raise HuntError(f"expected a value, found {t.text!r}", f"position {t.pos}")

    def condition(self) -> str:
        left = self.conjunction()
        while (t := self.peek()) is not None and t.text.lower() == "or":
            self.take()
            left = f"({left}) OR ({self.conjunction()})"
        return left

    def conjunction(self) -> str:
        left = self.atom()
        while (t := self.peek()) is not None and t.text.lower() == "and":
            self.take()
            left = f"({left}) AND ({self.atom()})"
        return left

    def atom(self) -> str:
        t = self.peek()
        if t is not None and t.text == "(":
            self.take()
            inner = self.condition()
            self.take(")")
            return inner
        if t is not None and t.text.lower() == "not":
            self.take()
            self.take("(")
            inner = self.condition()
            self.take(")")
            return f"NOT ({inner})"
        col = self.ident()
        op = self.take()
        o = op.text.lower()
        if o in _COMPARE:
            return f"{col} {_COMPARE[o]} {self.value()}"
        if o in _STRING_OPS:
            v = self.take()
            if v.kind != "str":
                raise HuntError(f"{o} takes a string, not {v.text!r}", f"position {v.pos}")
            body = _sql_string(v.text)[1:-1].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            return f"LOWER({col}) LIKE LOWER('{_STRING_OPS[o].format(body)}') ESCAPE '\\'"
        if o == "between":
            self.take("(")
            low = self.value()
            self.take("..")
            high = self.value()
            self.take(")")
            return f"{col} BETWEEN {low} AND {high}"
        if o == "in":
            self.take("(")
            vals = [self.value()]
            while self.take().text == ",":
                vals.append(self.value())
            self.i -= 1
            self.take(")")
            return f"{col} IN ({', '.join(vals)})"
        raise HuntError(f"the operator {op.text!r} is not supported", f"position {op.pos}")

    def names(self) -> list[str]:
        out = [self.ident()]
        while (t := self.peek()) is not None and t.text == ",":
            self.take()
            out.append(self.ident())
        return out


_KQL_START = re.compile(r"\s*[A-Za-z_][A-Za-z0-9_]*\s*(\||$)")


def looks_like_kql(query: str) -> bool:
    """A query that starts with a table name then ``|`` (or is only a table name) is KQL; anything else SQL."""
    return bool(_KQL_START.match(query))


_AGGREGATES = ("count", "dcount", "min", "max")


def _summarize(p: _Parser) -> tuple[list[str], list[str]]:
    """``summarize`` after its name: (SELECT items, GROUP BY keys)."""
    items: list[str] = []
    while True:
        alias = None
        t = p.peek()
        if t is not None and t.kind == "word" and p.i + 1 < len(p.toks) and p.toks[p.i + 1].text == "=":
            alias = p.name()
            p.take("=")
        fn = p.take()
        name = fn.text.lower()
        if fn.kind != "word" or name not in _AGGREGATES:
            raise HuntError(f"the aggregation {fn.text!r} is not supported (supported: count(), dcount(), min(),"
                            " max())", f"position {fn.pos}")
        p.take("(")
        if name == "count":
            p.take(")")
            items.append(f"COUNT(*) AS {_quote(alias or 'count_')}")
        else:
            col = p.ident()
            p.take(")")
            sql = f"COUNT(DISTINCT {col})" if name == "dcount" else f"{name.upper()}({col})"
            items.append(f"{sql} AS {_quote(alias or f'{name}_{col[1:-1]}')}")
        t = p.peek()
        if t is None or t.text != ",":
            break
        p.take()
    keys: list[str] = []
    t = p.peek()
    if t is not None and t.text.lower() == "by":
        p.take()
        while True:
            alias = None
            t = p.peek()
            if t is not None and t.kind == "word" and p.i + 1 < len(p.toks) and p.toks[p.i + 1].text == "=":
                alias = p.name()
                p.take("=")
            col = p.ident()
            if (t := p.peek()) is not None and t.text == "(":
                if col.lower() != '"bin"':
                    raise HuntError(f"only bin() may group in summarize ... by, not {col!r}", f"position {t.pos}")
                sql, binned = p.bin()
                keys.append(f"{sql} AS {_quote(alias or binned[1:-1])}")
            else:
                keys.append(f"{col} AS {_quote(alias)}" if alias else col)
            t = p.peek()
            if t is None or t.text != ",":
                break
            p.take()
    return keys, items


def to_sql(query: str, now: datetime, dialect: str = "sqlite") -> str:
    """The SQL for the KQL ``query`` in ``dialect`` (bin() differs); ``now`` is what ago() and now() count from."""
    p = _Parser(query, now, dialect)
    q = _Query(p.name())
    while p.peek() is not None:
        p.take("|")
        op = p.take()
        name = op.text.lower()
        if name == "where":
            if q.select or q.group or q.limit is not None:
                q.wrap()
            q.where.append(p.condition())
        elif name == "project":
            if q.select or q.group or q.limit is not None:
                q.wrap()
            q.select = ", ".join(p.names())
        elif name == "summarize":
            if q.select or q.group or q.limit is not None or q.order:
                q.wrap()
            keys, items = _summarize(p)
            q.select = ", ".join([*keys, *items])
            # Grouped by the keys' expressions (an alias is not visible to GROUP BY everywhere).
            q.group = ", ".join(re.sub(r' AS "[^"]*"$', "", k) for k in keys) or None
        elif name == "extend":
            if q.select or q.group or q.limit is not None:
                q.wrap()
            added = []
            while True:
                alias = p.name()
                p.take("=")
                added.append(f"{p.expr()} AS {_quote(alias)}")
                t = p.peek()
                if t is None or t.text != ",":
                    break
                p.take()
            q.select = ", ".join(["*", *added])
        elif name == "top":
            n = p.take()
            if n.kind != "num" or not n.text.isdigit():
                raise HuntError(f"top takes a whole number, not {n.text!r}", f"position {n.pos}")
            p.take("by")
            if q.limit is not None or q.order:
                q.wrap()
            col = p.ident()
            d = "DESC"
            t = p.peek()
            if t is not None and t.text.lower() in ("asc", "desc"):
                d = p.take().text.upper()
            q.order, q.limit = f"{col} {d}", int(n.text)
        elif name in ("order", "sort"):
            p.take("by")
            if q.limit is not None:
                q.wrap()
            keys = []
            while True:
                col = p.ident()
                d = "DESC"  # KQL's default order is descending
                t = p.peek()
                if t is not None and t.text.lower() in ("asc", "desc"):
                    d = p.take().text.upper()
                keys.append(f"{col} {d}")
                t = p.peek()
                if t is None or t.text != ",":
                    break
                p.take()
            q.order = ", ".join(keys)
        elif name in ("take", "limit"):
            n = p.take()
            if n.kind != "num" or not n.text.isdigit():
                raise HuntError(f"{name} takes a whole number, not {n.text!r}", f"position {n.pos}")
            q.limit = int(n.text) if q.limit is None else min(q.limit, int(n.text))
        else:
            raise HuntError(f"the KQL operator {op.text!r} is not supported (supported: where, project, extend,"
                            " summarize, top, order by, sort by, take, limit)", f"position {op.pos}")
    return q.sql()
