"""ASCII spellings of Defender's names: "Ring - Pilot" for "Ring – Pilot", nobody should have to type an en-dash."""

from __future__ import annotations

from collections.abc import Iterable

_DASHES = str.maketrans({"\u2013": "-", "\u2014": "-", "\u2010": "-", "\u2011": "-", "\u2212": "-"})


def fold(name: str) -> str:
    """The form two spellings of one name share: dashes as '-', runs of spaces as one, case folded."""
    return " ".join(name.translate(_DASHES).split()).casefold()


def match_name(typed: str, names: Iterable[str]) -> str | None:
    """The stored name ``typed`` means: itself when stored, else the one name of the same folded form (none when
    two stored names fold alike: better "not found" than the wrong group)."""
    stored = list(names)
    if typed in stored:
        return typed
    key = fold(typed)
    alike = [n for n in stored if fold(n) == key]
    return alike[0] if len(alike) == 1 else None
