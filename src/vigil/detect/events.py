"""Event shaping for the matcher: flatten pyevtx records, and turn any row into string views."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

Scalar = str | tuple[str, ...]

_SKIP_ATTRIBUTES = frozenset({"xmlns"})


def flatten_evtx(record: Mapping[str, Any]) -> dict[str, Any]:
    """Flatten a pyevtx JSON record: System fields by path (`Provider_Name`), event data by name.

    Unnamed `Data` values (an array of strings) stay together as a list under `Data`, never dropped.
    """
    event = record.get("Event", record)
    out: dict[str, Any] = {}
    system = event.get("System")
    if isinstance(system, Mapping):
        _flatten_paths(out, system, "")
    for section in ("EventData", "UserData"):
        data = event.get(section)
        if isinstance(data, Mapping):
            _flatten_leaves(out, data)
        elif data is not None:
            _put(out, section, data)
    return out


def _put(out: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        return
    if " " in key:  # Defender/other providers name fields "Threat Name"; Sigma rules write ThreatName
        key = key.replace(" ", "")
    if key in out:  # the same name twice: keep every value
        prev = out[key]
        prev_list = list(prev) if isinstance(prev, list | tuple) else [prev]
        out[key] = prev_list + (list(value) if isinstance(value, list | tuple) else [value])
    else:
        out[key] = value


def _flatten_paths(out: dict[str, Any], node: Mapping[str, Any], prefix: str) -> None:
    for key, value in node.items():
        if key == "#attributes" and isinstance(value, Mapping):
            for attr, v in value.items():
                if attr not in _SKIP_ATTRIBUTES:
                    _put(out, f"{prefix}_{attr}" if prefix else attr, v)
        elif key == "#text":
            _put(out, prefix or "text", value)
        elif isinstance(value, Mapping):
            _flatten_paths(out, value, f"{prefix}_{key}" if prefix else key)
        else:
            _put(out, f"{prefix}_{key}" if prefix else key, value)


def _flatten_leaves(out: dict[str, Any], node: Mapping[str, Any]) -> None:
    for key, value in node.items():
        if key == "#attributes":
            if isinstance(value, Mapping):
                for attr, v in value.items():
                    if attr not in _SKIP_ATTRIBUTES:
                        _put(out, attr, v)
        elif isinstance(value, Mapping):
            if "#text" in value:
                _put(out, key, value["#text"])
            _flatten_leaves(out, {k: v for k, v in value.items() if k != "#text"})
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            for v in value:
                _flatten_leaves(out, {key: v})
        else:
            _put(out, key, value)


def _text(value: Any) -> str:
    t = value.__class__
    if t is str:
        return value  # type: ignore[no-any-return]
    if t is bool:
        return "true" if value else "false"  # Sigma compares booleans as these strings
    if t is int or t is float:
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def views(event: Mapping[str, Any]) -> tuple[dict[str, Scalar], dict[str, Scalar], bool]:
    """(lower-cased values, original values, whether some value is a list) of a flat event.

    Absent and null fields are left out, so `field: null` and `|exists` see them as missing.
    """
    orig: dict[str, Scalar] = {}
    low: dict[str, Scalar] = {}
    multi = False
    for key, value in event.items():
        if value is None:
            continue
        if isinstance(value, list | tuple):
            items = tuple(_text(v) for v in value if v is not None)
            orig[key] = items
            low[key] = tuple(s.lower() for s in items)
            multi = True
        else:
            s = value if value.__class__ is str else _text(value)
            orig[key] = s
            low[key] = s.lower()
    return low, orig, multi
