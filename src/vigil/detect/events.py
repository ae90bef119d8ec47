"""Event shaping for the matcher: flatten pyevtx records, and turn any row into string views."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

try:  # the C hot path, built at install (`_speedups.c` mirrors `_evtx_views_fast` below)
    from vigil.detect import _speedups
except ImportError:  # pragma: no cover - exercised where no compiler built the extension
    _speedups = None  # type: ignore[assignment]

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
        t = value.__class__
        if t is str:
            orig[key] = value
            low[key] = value.lower()
        elif value is None:
            continue
        elif t is list or t is tuple:
            items = tuple(_text(v) for v in value if v is not None)
            orig[key] = items
            low[key] = tuple(s.lower() for s in items)
            multi = True
        else:
            s = _text(value)
            orig[key] = s
            low[key] = s.lower()
    return low, orig, multi


class _Unusual(Exception):
    """A record shape the fast path leaves to `flatten_evtx` + `views`."""


def _scalar(value: Any) -> str:
    t = value.__class__
    if t is str:
        return value  # type: ignore[no-any-return]
    if t is int:
        return str(value)
    if t is bool:
        return "true" if value else "false"
    raise _Unusual


def evtx_views(record: Mapping[str, Any],
               native: bool | None = None) -> tuple[dict[str, Scalar], dict[str, Scalar], bool]:
    """`views(flatten_evtx(record))` in one pass for the usual pyevtx shapes (several times faster); `native`:
    in C (None: when it is built).

    System fields one level deep with attributes, EventData of scalars: anything else (lists, nested
    data, repeated or spaced names, UserData) takes the general path, so the result is always the same.
    """
    if _speedups is not None and native is not False:
        fast = _speedups.evtx_views(record)
        if fast is not None:
            return fast
        return views(flatten_evtx(record))
    try:
        return _evtx_views_fast(record)
    except _Unusual:
        return views(flatten_evtx(record))


def _evtx_views_fast(record: Mapping[str, Any]) -> tuple[dict[str, Scalar], dict[str, Scalar], bool]:
    # Written for speed (this runs on every event): `str` checks inline, no helper call per field.
    event = record.get("Event", record)
    if event.get("UserData") is not None:
        raise _Unusual
    orig: dict[str, Scalar] = {}
    system = event.get("System")
    if system is not None:
        if system.__class__ is not dict:
            raise _Unusual
        made = 0
        for key, value in system.items():
            t = value.__class__
            if t is str:
                orig[key] = value
            elif t is int:
                orig[key] = str(value)
            elif t is dict:
                for sub, v in value.items():
                    if sub == "#attributes":
                        if v.__class__ is not dict:
                            raise _Unusual
                        for attr, a in v.items():
                            if a is not None and attr not in _SKIP_ATTRIBUTES:
                                c = a.__class__
                                orig[key + "_" + attr] = a if c is str else str(a) if c is int else _scalar(a)
                                made += 1
                        continue
                    if v is None:
                        continue
                    if sub == "#text":
                        orig[key] = v if v.__class__ is str else _scalar(v)
                    else:
                        orig[key + "_" + sub] = v if v.__class__ is str else _scalar(v)
                    made += 1
                continue
            elif value is not None:
                orig[key] = _scalar(value)
            else:
                continue
            made += 1
        if len(orig) != made or " " in "".join(orig) or "#" in "".join(system):
            raise _Unusual  # a repeated, spaced or '#' name: the general path handles those
    data = event.get("EventData")
    if data is not None:
        if data.__class__ is not dict:
            raise _Unusual
        expected = len(orig) + len(data)
        orig.update(data)  # one C-level copy; the few non-strings are fixed below
        if len(orig) != expected or " " in "".join(data) or "#attributes" in data:
            raise _Unusual  # a repeated or spaced name ("Threat Name"), attributes: the general path
        for key, value in data.items():
            t = value.__class__
            if t is str:
                continue
            if t is int:
                orig[key] = str(value)
            elif value is None:
                del orig[key]
            else:
                orig[key] = _scalar(value)
    low = {k: v.lower() for k, v in orig.items()}  # type: ignore[union-attr]
    return low, orig, False
