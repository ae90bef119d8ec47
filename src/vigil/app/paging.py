"""One page of a long list, asked of the store: which page, sorted by what, narrowed by which search words.

The store pages (``LIMIT``/``OFFSET`` and a ``COUNT``), so a list of 100,000 rows costs one page to show, not
every row loaded and sorted in Python. ``in_memory`` is the same contract for the in-memory fake.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from vigil.app.errors import InvalidInput

T = TypeVar("T")
MAX_PAGE_SIZE = 500


@dataclass(frozen=True)
class PageRequest:
    """Page ``page`` (from 1) of ``size`` rows, ordered by the key ``sort`` (ties by id), and only the rows with
    every word of ``words`` in one of their searched fields (case-insensitive, anywhere in the text)."""

    sort: str
    desc: bool = True
    page: int = 1
    size: int = 50
    words: tuple[str, ...] = ()

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.size

    def checked(self, sorts: Sequence[str]) -> PageRequest:
        """Itself, or an InvalidInput naming the field that is wrong (``sort``, ``page``, ``size``)."""
        if self.sort not in sorts:
            raise InvalidInput(f"sort {self.sort!r}: use one of {', '.join(sorts)}", field="sort")
        if self.page < 1:
            raise InvalidInput("page: a whole number from 1", field="page")
        if not 1 <= self.size <= MAX_PAGE_SIZE:
            raise InvalidInput(f"size: between 1 and {MAX_PAGE_SIZE}", field="size")
        return self


@dataclass(frozen=True)
class Page(Generic[T]):
    """The rows of one page and how many rows the whole (searched, filtered) list has."""

    rows: tuple[T, ...]
    total: int


def words_of(text: str) -> tuple[str, ...]:
    return tuple(text.lower().split())


def in_memory(rows: Sequence[T], req: PageRequest, sorts: Mapping[str, Callable[[T], Any]],
              searched: Callable[[T], Sequence[object]], ident: Callable[[T], Any]) -> Page[T]:
    """The store's paging, done over a list: the in-memory fake's half of the contract (tests/contract/)."""
    def text(r: T) -> str:
        return " ".join(str(f) for f in searched(r) if f is not None).lower()

    found = [r for r in rows if all(w in text(r) for w in req.words)]
    key = sorts[req.sort]
    # NULLs last whichever way, then id, as the SQL does (NULLS LAST, then the id in the same direction).
    present = sorted((r for r in found if key(r) is not None), key=lambda r: (key(r), ident(r)), reverse=req.desc)
    absent = sorted((r for r in found if key(r) is None), key=ident, reverse=req.desc)
    ordered = present + absent
    return Page(tuple(ordered[req.offset: req.offset + req.size]), len(found))
