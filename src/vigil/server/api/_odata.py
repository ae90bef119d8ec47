"""OData query options on list routes, as Defender's API takes them: $filter, $orderby, $skip, $top, $select.

One parser for every list route: a route hands its items (pydantic models with Defender's field names) and the
parsed options to ``respond``. ``$filter`` supports ``eq ne gt ge lt le``, ``and or not``, parentheses,
``in (...)`` and ``startswith/endswith/contains(prop, 'text')``; literals are 'strings' ('' for a quote),
numbers, true/false/null and unquoted ISO dates (``lastSeen gt 2026-11-01Z`` or ``...T08:00:00Z``). Every
error is a 400 naming the bad token and its position, never an empty result.

The options apply to the caller's items after the service has scoped them, so no filter can reach beyond the
caller's device groups.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from vigil.server.errors import APIError

MAX_TOP = 10_000
MAX_FILTER = 4096

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<str>'(?:[^']|'')*')
    | (?P<date>\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:Z|[+-]\d{2}:\d{2})?(?![\w.:-]))
    | (?P<num>-?\d+(?:\.\d+)?(?![\w.]))
    | (?P<punct>[(),])
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*(?:/[A-Za-z_][A-Za-z0-9_]*)*)
    )""", re.VERBOSE)
_COMPARE = {"eq", "ne", "gt", "ge", "lt", "le"}
_FUNCS = {"startswith", "endswith", "contains"}


class ODataError(Exception):
    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option


@dataclass(frozen=True)
class Tok:
    kind: str  # str, date, num, punct, word, end
    text: str
    pos: int


def _lex(text: str) -> list[Tok]:
    out, i = [], 0
    while i < len(text):
        if text[i:].strip() == "":
            break
        m = _TOKEN.match(text, i)
        if m is None or m.end() == i:
            j = i + len(text[i:]) - len(text[i:].lstrip())
            if text[j] == "'":
                raise ODataError("$filter", f"unterminated string at position {j}")
            raise ODataError("$filter", f"unexpected {text[j:j + 12]!r} at position {j}")
        kind = m.lastgroup or ""
        out.append(Tok(kind, m.group(kind), m.start(kind)))
        i = m.end()
    out.append(Tok("end", "", len(text)))
    return out


# A parsed filter is a predicate over one item's mapping.
Predicate = Callable[[dict[str, Any]], bool]


def _as_datetime(value: str) -> datetime:
    if len(value) == 10:
        value += "T00:00:00Z"
    elif value.endswith("Z") and len(value) == 11:
        value = value[:10] + "T00:00:00Z"
    ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


class _Parser:
    def __init__(self, text: str, fields: frozenset[str]) -> None:
        self.toks, self.i, self.fields = _lex(text), 0, fields

    def peek(self) -> Tok:
        return self.toks[self.i]

    def take(self) -> Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def fail(self, tok: Tok, wanted: str) -> ODataError:
        got = "the end" if tok.kind == "end" else repr(tok.text)
        return ODataError("$filter", f"expected {wanted} at position {tok.pos}, got {got}")

    def keyword(self, *words: str) -> bool:
        tok = self.peek()
        if tok.kind == "word" and tok.text.lower() in words:
            self.i += 1
            return True
        return False

    def expect(self, text: str) -> None:
        tok = self.take()
        if tok.text != text:
            raise self.fail(tok, repr(text))

    def parse(self) -> Predicate:
        pred = self.or_expr()
        if self.peek().kind != "end":
            raise self.fail(self.peek(), "'and', 'or' or the end")
        return pred

    def or_expr(self) -> Predicate:
        parts = [self.and_expr()]
        while self.keyword("or"):
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else (lambda row: any(p(row) for p in parts))

    def and_expr(self) -> Predicate:
        parts = [self.unary()]
        while self.keyword("and"):
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else (lambda row: all(p(row) for p in parts))

    def unary(self) -> Predicate:
        if self.keyword("not"):
            inner = self.unary()
            return lambda row: not inner(row)
        if self.peek().text == "(":
            self.take()
            inner = self.or_expr()
            self.expect(")")
            return inner
        tok = self.peek()
        if tok.kind == "word" and tok.text.lower() in _FUNCS and self.toks[self.i + 1].text == "(":
            return self.function()
        return self.comparison()

    def prop(self) -> str:
        tok = self.take()
        if tok.kind != "word":
            raise self.fail(tok, "a property name")
        if tok.text not in self.fields:
            raise ODataError("$filter", f"unknown property {tok.text!r} at position {tok.pos}; "
                             f"use one of: {', '.join(sorted(self.fields))}")
        return tok.text

    def literal(self) -> Any:
        tok = self.take()
        if tok.kind == "str":
            return tok.text[1:-1].replace("''", "'")
        if tok.kind == "num":
            return float(tok.text) if "." in tok.text else int(tok.text)
        if tok.kind == "date":
            try:
                return _as_datetime(tok.text)
            except ValueError:
                raise ODataError("$filter", f"not a date: {tok.text!r} at position {tok.pos}") from None
        if tok.kind == "word" and tok.text in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[tok.text]
        raise self.fail(tok, "a value ('text', a number, a date, true, false or null)")

    def function(self) -> Predicate:
        name = self.take().text.lower()
        self.expect("(")
        field = self.prop()
        self.expect(",")
        at = self.peek()
        needle = self.literal()
        if not isinstance(needle, str):
            raise ODataError("$filter", f"{name} needs a 'text' value at position {at.pos}")
        self.expect(")")
        test: Callable[[str], bool] = {
            "startswith": lambda v: v.lower().startswith(needle.lower()),
            "endswith": lambda v: v.lower().endswith(needle.lower()),
            "contains": lambda v: needle.lower() in v.lower(),
        }[name]
        return lambda row: isinstance(row.get(field), str) and test(row[field])

    def comparison(self) -> Predicate:
        field = self.prop()
        op_tok = self.take()
        op = op_tok.text.lower()
        if op == "in":
            self.expect("(")
            values = [self.literal()]
            while self.peek().text == ",":
                self.take()
                values.append(self.literal())
            self.expect(")")
            return lambda row: any(_compare(row.get(field), "eq", v, field) for v in values)
        if op_tok.kind != "word" or op not in _COMPARE:
            raise self.fail(op_tok, "an operator (eq, ne, gt, ge, lt, le, in)")
        value = self.literal()
        if value is None and op not in ("eq", "ne"):
            raise ODataError("$filter", f"{op} null at position {op_tok.pos}: only eq and ne compare with null")
        return lambda row: _compare(row.get(field), op, value, field)


def _compare(have: Any, op: str, want: Any, field: str) -> bool:
    if isinstance(want, datetime) and isinstance(have, str):
        try:
            have = _as_datetime(have)
        except ValueError:
            raise ODataError("$filter", f"{field} is not a date, so it cannot be compared with one") from None
    if isinstance(have, list):  # a list property (machineTags) equals a value it contains
        if op in ("eq", "ne"):
            return (want in have) == (op == "eq")
        raise ODataError("$filter", f"{field} is a list: only eq and ne apply")
    if op == "eq":
        return bool(have == want)
    if op == "ne":
        return bool(have != want)
    if have is None:
        return False
    numbers = (int, float)
    same = (isinstance(have, numbers) and not isinstance(have, bool) and isinstance(want, numbers)) or (
        type(have) is type(want))
    if not same:
        raise ODataError("$filter", f"{field} holds {type(have).__name__} values; cannot compare with {want!r}")
    return bool({"gt": have > want, "ge": have >= want, "lt": have < want, "le": have <= want}[op])


def parse_filter(text: str, fields: frozenset[str]) -> Predicate:
    if len(text) > MAX_FILTER:
        raise ODataError("$filter", f"longer than {MAX_FILTER} characters")
    return _Parser(text, fields).parse()


def _names(option: str, text: str, fields: frozenset[str]) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    for n in names:
        if n not in fields:
            raise ODataError(option, f"unknown property {n!r}; use one of: {', '.join(sorted(fields))}")
    return names


def parse_orderby(text: str, fields: frozenset[str]) -> list[tuple[str, bool]]:
    """(property, descending) pairs, first key first."""
    keys = []
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise ODataError("$orderby", f"expected 'property [asc|desc]', got {part.strip()!r}")
        _names("$orderby", words[0], fields)
        keys.append((words[0], len(words) == 2 and words[1].lower() == "desc"))
    return keys


@dataclass(frozen=True)
class ODataQuery:
    filter: str | None = None
    orderby: str | None = None
    skip: int = 0
    top: int | None = None
    select: str | None = None

    @property
    def filtered(self) -> bool:
        return bool(self.filter or self.orderby or self.skip)


def _options(
    filter_: str | None = Query(default=None, alias="$filter", max_length=MAX_FILTER,
                                description="OData filter: eq ne gt ge lt le, and or not, in (...), startswith(...)"),
    orderby: str | None = Query(default=None, alias="$orderby", description="property [asc|desc], ..."),
    skip: int = Query(default=0, alias="$skip", ge=0),
    top: int | None = Query(default=None, alias="$top", ge=1, le=MAX_TOP),
    select: str | None = Query(default=None, alias="$select", description="properties to return, comma-separated"),
) -> ODataQuery:
    return ODataQuery(filter_, orderby, skip, top, select)


def options() -> Any:
    """The route parameter: ``q: ODataQuery = odata.options()``."""
    return Depends(_options)


def _sort_key(value: Any) -> tuple[int, Any]:
    # None sorts first ascending (as in OData); mixed types never compare with each other.
    if value is None:
        return (0, 0)
    if isinstance(value, bool | int | float):
        return (1, value)
    return (2, str(value))


def apply(q: ODataQuery, items: Sequence[BaseModel], model: type[BaseModel]) -> list[dict[str, Any]]:
    """The items filtered, ordered, paged and projected as ``q`` asks; ODataError names what is wrong."""
    fields = frozenset(model.model_fields)
    pred = parse_filter(q.filter, fields) if q.filter else None
    order = parse_orderby(q.orderby, fields) if q.orderby else []
    select = _names("$select", q.select, fields) if q.select else None
    rows = [i.model_dump(mode="json") for i in items]
    if pred is not None:
        rows = [r for r in rows if pred(r)]
    for name, desc in reversed(order):  # stable sorts, last key first
        rows.sort(key=lambda r: _sort_key(r.get(name)), reverse=desc)
    rows = rows[q.skip:]
    if q.top is not None:
        rows = rows[:q.top]
    if select is not None:
        rows = [{k: r.get(k) for k in select} for r in rows]
    return rows


def respond(q: ODataQuery, items: Sequence[BaseModel], model: type[BaseModel], context: str) -> JSONResponse:
    """The list route's answer: ``{"@odata.context": ..., "value": [...]}``, or a 400 naming the bad option."""
    try:
        rows = apply(q, items, model)
    except ODataError as e:
        raise APIError(400, "invalid_query", str(e), field=e.option) from None
    return JSONResponse({"@odata.context": context, "value": rows})
