"""Sigma's timestamp-part modifiers (`|minute`, `|hour`, `|day`, `|week`, `|month`, `|year`): read a field
value as an instant and take one part of it, in UTC."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

# Each part with the values it can take (the year is any year): a rule value outside is a load error.
PART_RANGES: dict[str, tuple[int, int] | None] = {
    "minute": (0, 59),
    "hour": (0, 23),
    "day": (1, 31),  # of the month
    "week": (1, 53),  # ISO 8601 week of the year
    "month": (1, 12),
    "year": None,
}

_EPOCH = re.compile(r"-?\d+(?:\.\d+)?")
# Epoch numbers at or above this are milliseconds: as seconds they would lie after the year 5000.
_MILLISECONDS_FROM = 100_000_000_000


def instant(text: str) -> datetime | None:
    """The UTC instant a field value names, or None when it names none.

    ISO 8601 (`T` or a space between date and time, any fraction, `Z` or an offset; no zone means UTC),
    or a Unix epoch number: seconds, or milliseconds from 10^11 on.
    """
    s = text.strip()
    try:
        if _EPOCH.fullmatch(s):
            n = float(s)
            return datetime.fromtimestamp(n / 1000 if abs(n) >= _MILLISECONDS_FROM else n, UTC)
        at = datetime.fromisoformat(s)
        return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    except (ValueError, OverflowError, OSError):  # not a timestamp, or one outside datetime's years
        return None


_PARTS: dict[str, Callable[[datetime], int]] = {
    "minute": lambda t: t.minute,
    "hour": lambda t: t.hour,
    "day": lambda t: t.day,
    "week": lambda t: t.isocalendar().week,
    "month": lambda t: t.month,
    "year": lambda t: t.year,
}


def timestamp_part(value: object, part: str) -> int | None:
    """`part` of the instant `value` names (the original field text); None for an absent or non-time value,
    which then matches no rule value."""
    if not isinstance(value, str):
        return None
    at = instant(value)
    return None if at is None else _PARTS[part](at)
