"""The one-pass OSV event walk gives what the plain two-pass walk of OSV's specification gives, on any sorted
event list (Hypothesis)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from vigil.tvm.matching import _in_events
from vigil.tvm.model import EventKind

K = EventKind


def reference(version: Any, events: list[tuple[Any, EventKind, str]]) -> tuple[str, str | None] | None:
    introduced: str | None = None
    for parsed, kind, raw in events:
        if kind is K.INTRODUCED and (parsed is None or version >= parsed):
            introduced = raw
        elif parsed is not None and kind is not K.INTRODUCED:
            closed = version > parsed if kind is K.LAST_AFFECTED else version >= parsed
            if closed:
                introduced = None
    if introduced is None:
        return None
    for parsed, kind, raw in events:
        if kind is K.FIXED and parsed is not None and version < parsed:
            return f"in [{introduced}, fixed {raw})", raw
        if kind is K.LAST_AFFECTED and parsed is not None and version <= parsed:
            return f"in [{introduced}, last affected {raw}]", None
        if kind is K.LIMIT and parsed is not None and version < parsed:
            return f"in [{introduced}, limit {raw})", None
    return f"in [{introduced}, no fix)", None


events = st.lists(st.tuples(st.integers(1, 30), st.sampled_from(list(K))), max_size=8)


@given(events, st.integers(0, 31), st.booleans())
def test_one_pass_equals_the_reference(raw: list[tuple[int, EventKind]], version: int, zero: bool) -> None:
    walk: list[tuple[Any, EventKind, str]] = [(None, K.INTRODUCED, "0")] if zero else []
    walk += sorted(((v, k, str(v)) for v, k in raw), key=lambda t: t[0])
    assert _in_events(version, walk) == reference(version, walk)
