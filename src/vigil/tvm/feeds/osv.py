"""OSV records (JSON or YAML, already decoded) as `Advisory`s; a record of the wrong shape names file and field."""

from __future__ import annotations

from typing import Any

from vigil.tvm.feeds import FeedError
from vigil.tvm.model import Advisory, Affected, Event, EventKind, Range

_KINDS = {k.value: k for k in EventKind}


def parse_osv(record: Any, path: str) -> Advisory:
    """One OSV record; raises `FeedError` naming the field at fault."""
    if not isinstance(record, dict) or not isinstance(record.get("id"), str):
        raise FeedError(path, None, "not an OSV record: no string 'id'")
    affected: list[Affected] = []
    for i, a in enumerate(_list(record, "affected", path)):
        where = f"affected[{i}]"
        pkg = a.get("package") if isinstance(a, dict) else None
        if (
            not isinstance(pkg, dict)
            or not isinstance(pkg.get("ecosystem"), str)
            or not isinstance(pkg.get("name"), str)
        ):
            raise FeedError(path, None, f"{where}.package needs string 'ecosystem' and 'name'")
        ranges: list[Range] = []
        for j, r in enumerate(_list(a, "ranges", path, where)):
            events: list[Event] = []
            for k, e in enumerate(_list(r, "events", path, f"{where}.ranges[{j}]")):
                if not isinstance(e, dict) or len(e) != 1:
                    raise FeedError(path, None, f"{where}.ranges[{j}].events[{k}] must have exactly one key")
                ((kind, version),) = e.items()
                if kind not in _KINDS or not isinstance(version, str):
                    raise FeedError(
                        path, None, f"{where}.ranges[{j}].events[{k}]: unknown event {kind!r} or non-string version"
                    )
                events.append(Event(_KINDS[kind], version))
            ranges.append(Range(str(r.get("type", "ECOSYSTEM")), tuple(events)))
        versions = tuple(str(v) for v in _list(a, "versions", path, where))
        affected.append(Affected(pkg["ecosystem"], pkg["name"], tuple(ranges), versions))
    severity = tuple(
        (str(s.get("type")), str(s.get("score"))) for s in _list(record, "severity", path) if isinstance(s, dict)
    )
    return Advisory(
        record["id"],
        tuple(str(x) for x in _list(record, "aliases", path)),
        tuple(affected),
        summary=str(record.get("summary") or ""),
        withdrawn=str(record["withdrawn"]) if record.get("withdrawn") else None,  # YAML may give a datetime
        severity=severity,
        related=tuple(str(x) for x in _list(record, "related", path)),
    )


def _list(obj: Any, key: str, path: str, where: str = "") -> list[Any]:
    value = obj.get(key) if isinstance(obj, dict) else None
    if value is None:
        return []
    if not isinstance(value, list):
        raise FeedError(path, None, f"{where + '.' if where else ''}{key} must be a list")
    return value
