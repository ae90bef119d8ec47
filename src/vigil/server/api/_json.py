"""JSON rendering shared by the API modules."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def iso(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    ts = ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


class ByName:
    """Lets a response model be read by field name too (``m["computerDnsName"]``, ``m.get("machineTags")``).

    Transitional: the portal helpers used to hand out plain mappings, and modules written against them
    (some in flight) still index them. New code reads attributes; this goes with the last indexing caller.
    """

    def __getitem__(self, name: str) -> Any:
        try:
            return getattr(self, name)
        except AttributeError:
            raise KeyError(name) from None

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self, name, default)
