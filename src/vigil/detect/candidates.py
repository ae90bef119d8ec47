"""Run-time prefilter: the bindings of one index bucket that an event can possibly match."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import ahocorasick

from vigil.detect.events import Scalar
from vigil.detect.prefilter import BucketPlan

try:  # the C hot path, built at install; without it the same lookups run in Python
    from vigil.detect import _speedups
except ImportError:  # pragma: no cover - exercised where no compiler built the extension
    _speedups = None  # type: ignore[assignment]

# Up to this many literals, `literal in value` (CPython's fast substring search) beats an automaton pass.
_FEW_LITERALS = 12

Table = tuple[tuple[str, tuple[int, ...]], ...]
Search = Callable[[str], Iterable[tuple[Any, tuple[int, ...]]]]


def anchors(literals: Iterable[str]) -> list[str]:
    """Short texts, one of which occurs in each literal: when none is in a value, no literal is.

    Greedy: the substring (3 or 4 characters, or 2 without letters or digits, such as '::') found in
    the most literals still uncovered, while it covers at least three; the rest stand for themselves.
    """
    remaining = set(literals)
    out: list[str] = []
    while remaining:
        counts: Counter[str] = Counter()
        for lit in remaining:
            counts.update({lit[i:i + n] for n in (2, 3, 4) for i in range(len(lit) - n + 1)
                           if n > 2 or not any(c.isalnum() for c in lit[i:i + n])})
        if not counts:
            break
        best, cover = max(counts.items(), key=lambda kv: (kv[1], len(kv[0]), kv[0]))
        if cover < 3:
            break
        out.append(best)
        remaining = {lit for lit in remaining if best not in lit}
    # A literal holding another needs no anchor of its own ('invoke-mimikatz' holds 'mimikatz').
    return out + sorted(lit for lit in remaining if not any(o != lit and o in lit for o in remaining))


# How one field's literals are searched: (literals, ids per literal, anchors or None, automaton iter or None,
# `_speedups.Literals` or None). Plain tuples, so that the C hot path and `_search` below read the same thing.
SubSpec = tuple[tuple[str, ...], tuple[tuple[int, ...], ...], tuple[str, ...] | None, Search | None, Any]

def _searcher(table: Table, native: bool) -> SubSpec:
    """How to find which literals of `table` occur in a value (`native`: by the C matcher)."""
    literals = tuple(literal for literal, _ in table)
    ids = tuple(i for _, i in table)
    if native:  # folded: the C path searches original values, lower-cased as it reads them
        return literals, ids, None, None, _speedups.Literals(literals, folded=True)
    if len(table) <= _FEW_LITERALS:
        return literals, ids, None, None, None
    if len(table) <= _FEW_LITERALS * 4:
        cover = anchors(literals)
        if len(cover) * 2 <= len(table):  # a miss (most values) costs a few scans instead of all of them
            return literals, ids, tuple(cover), None, None
    auto = ahocorasick.Automaton()
    for literal, i in table:
        auto.add_word(literal, i)
    auto.make_automaton()
    return literals, ids, None, auto.iter, None


def _search(spec: SubSpec, value: str) -> Iterable[tuple[int, ...]]:
    """The ids of each literal of `spec` found in `value` (the Python twin of `_speedups`' search)."""
    literals, ids, cover, automaton, matcher = spec
    if matcher is not None:
        return [ids[i] for i in matcher.find(value)]
    if automaton is not None:
        return [found for _, found in automaton(value)]
    if cover is not None and not any(anchor in value for anchor in cover):
        return []
    return [i for literal, i in zip(literals, ids, strict=True) if literal in value]


def _ascii(value: Scalar) -> bool:
    return value.isascii() if value.__class__ is str else all(x.isascii() for x in value)


class Bucket:
    """One index bucket: its binding functions and the lookups that choose which of them to run."""

    __slots__ = ("always", "eq", "has", "keyword", "lookups", "members", "sub", "unicode")

    def __init__(self, members: tuple[int, ...], plan: BucketPlan, *, native: bool | None = None) -> None:
        """`native`: whether the C matcher reads the lookups (None: when it is built)."""
        native = _speedups is not None and native is not False
        self.members = members
        self.always = frozenset(plan.always)
        self.eq = tuple((f, dict(t)) for f, t in plan.eq)
        self.sub = tuple((f, _searcher(t, native)) for f, t in plan.sub if f is not None)
        keyword = [t for f, t in plan.sub if f is None]
        self.keyword = _searcher(keyword[0], native) if keyword else None
        self.has = plan.has
        self.unicode = plan.unicode
        # What `_speedups.candidates` and `_speedups.run` read, in this order.
        self.lookups = (tuple(sorted(self.always)), self.eq, self.sub, self.has, self.unicode, self.keyword)

    def candidates(self, low: Mapping[str, Scalar]) -> list[int]:
        """Binding indexes to evaluate on this event (lower-cased view), in binding order: the Python path's
        (with the extension, `_speedups.run` does this and the tests alone call `_speedups.candidates`)."""
        return sorted(self._found(low))

    def _found(self, low: Mapping[str, Scalar]) -> set[int]:
        """The Python twin of `_speedups.candidates`."""
        found = set(self.always)
        get = low.get
        for field, table in self.eq:
            v = get(field)
            for x in (() if v is None else (v,) if v.__class__ is str else v):
                ids = table.get(x)
                if ids:
                    found.update(ids)
        for field, spec in self.sub:
            v = get(field)
            for x in (() if v is None else (v,) if v.__class__ is str else v):
                for ids in _search(spec, x):
                    found.update(ids)
        for field, ids in self.has:
            if field in low:
                found.update(ids)
        for ufield, ids in self.unicode:
            if ufield is None:
                if not all(_ascii(x) for x in low.values()):
                    found.update(ids)
            else:
                value = get(ufield)
                if value is not None and not _ascii(value):
                    found.update(ids)
        if self.keyword is not None:
            for v in low.values():
                for x in (v,) if v.__class__ is str else v:
                    for ids in _search(self.keyword, x):
                        found.update(ids)
        return found
