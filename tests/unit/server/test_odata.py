"""The shared OData options: each operator, precedence, paging, projection, and errors that name the bad token."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from vigil.server.api._odata import ODataError, ODataQuery, apply


class Item(BaseModel):
    id: str
    name: str
    riskScore: int
    lastSeen: str | None
    isOffboarded: bool
    machineTags: list[str]


ITEMS = [
    Item(id="a", name="web-01", riskScore=10, lastSeen="2026-11-28T09:00:00Z", isOffboarded=False,
         machineTags=["prod"]),
    Item(id="b", name="web-02", riskScore=50, lastSeen="2026-11-30T09:00:00Z", isOffboarded=False, machineTags=[]),
    Item(id="c", name="db-O'Neil", riskScore=90, lastSeen=None, isOffboarded=True, machineTags=["prod", "db"]),
]


def ids(**kw: object) -> list[str]:
    return [r["id"] for r in apply(ODataQuery(**kw), ITEMS, Item)]  # type: ignore[arg-type]


@pytest.mark.parametrize(("expr", "want"), [
    ("name eq 'web-01'", ["a"]),
    ("name ne 'web-01'", ["b", "c"]),
    ("riskScore gt 10", ["b", "c"]),
    ("riskScore ge 50", ["b", "c"]),
    ("riskScore lt 50", ["a"]),
    ("riskScore le 50", ["a", "b"]),
    ("riskScore ge 10 and riskScore le 50 or name eq 'db-O''Neil'", ["a", "b", "c"]),
    ("riskScore ge 10 and (riskScore gt 50 or isOffboarded eq false)", ["a", "b", "c"]),
    ("not (isOffboarded eq true)", ["a", "b"]),
    ("id in ('a', 'c')", ["a", "c"]),
    ("startswith(name, 'WEB')", ["a", "b"]),
    ("endswith(name, '02')", ["b"]),
    ("contains(name, 'neil')", ["c"]),
    ("lastSeen gt 2026-11-29Z", ["b"]),
    ("lastSeen lt 2026-11-29T00:00:00Z", ["a"]),
    ("lastSeen eq null", ["c"]),
    ("machineTags eq 'prod'", ["a", "c"]),
    ("isOffboarded eq true or riskScore eq 10", ["a", "c"]),
])
def test_filter_operators(expr: str, want: list[str]) -> None:
    assert ids(filter=expr) == want


def test_order_page_and_select() -> None:
    assert ids(orderby="riskScore desc") == ["c", "b", "a"]
    assert ids(orderby="isOffboarded asc, riskScore desc") == ["b", "a", "c"]
    assert ids(orderby="riskScore desc", skip=1, top=1) == ["b"]
    rows = apply(ODataQuery(select="id,riskScore", filter="riskScore gt 60"), ITEMS, Item)
    assert rows == [{"id": "c", "riskScore": 90}]


@pytest.mark.parametrize(("kw", "option", "names"), [
    ({"filter": "colour eq 'red'"}, "$filter", "'colour' at position 0"),
    ({"filter": "name eq"}, "$filter", "expected a value"),
    ({"filter": "name equals 'x'"}, "$filter", "'equals'"),
    ({"filter": "name eq 'x' nand id eq 'a'"}, "$filter", "'nand'"),
    ({"filter": "name eq 'x"}, "$filter", "unterminated string at position 8"),
    ({"filter": "(name eq 'x'"}, "$filter", "expected ')'"),
    ({"filter": "riskScore gt 'high'"}, "$filter", "riskScore holds int"),
    ({"filter": "riskScore gt null"}, "$filter", "gt null"),
    ({"filter": "name eq 'x' ; drop"}, "$filter", "';"),
    ({"filter": "startswith(riskScore, 1)"}, "$filter", "needs a 'text' value"),
    ({"filter": "lastSeen gt 2026-13-45Z"}, "$filter", "not a date"),
    ({"orderby": "riskScore sideways"}, "$orderby", "'riskScore sideways'"),
    ({"orderby": "colour"}, "$orderby", "'colour'"),
    ({"select": "id,colour"}, "$select", "'colour'"),
])
def test_errors_name_the_bad_token(kw: dict[str, str], option: str, names: str) -> None:
    with pytest.raises(ODataError) as e:
        apply(ODataQuery(**kw), ITEMS, Item)  # type: ignore[arg-type]
    assert e.value.option == option and names in str(e.value)


@given(st.text(max_size=60))
def test_any_filter_text_parses_or_fails_with_odata_error(text: str) -> None:
    with contextlib.suppress(ODataError):
        apply(ODataQuery(filter=text), ITEMS, Item)
