"""The fused EVTX fast paths (C and Python) give exactly what the general flatten + views path gives, on every
shape."""

from __future__ import annotations

from typing import Any

import pytest

from vigil.detect import events
from vigil.detect.events import evtx_views, flatten_evtx, views

try:
    from vigil.detect import _speedups as speedups
except ImportError:  # not built here: tests/unit/detect/test_speedups.py says whether that is allowed
    speedups = None  # type: ignore[assignment]

SYSTEM: dict[str, Any] = {
    "Provider": {"#attributes": {"Name": "Microsoft-Windows-Sysmon", "Guid": "5770385F"}},
    "EventID": 1, "Version": 5, "Level": 4, "Keywords": "0x8000000000000000",
    "TimeCreated": {"#attributes": {"SystemTime": "2024-05-01T10:00:00.000000Z"}},
    "EventRecordID": 42, "Correlation": None,
    "Execution": {"#attributes": {"ProcessID": 3500, "ThreadID": 4688}},
    "Channel": "Microsoft-Windows-Sysmon/Operational", "Computer": "HOST",
    "Security": {"#attributes": {"UserID": "S-1-5-18"}},
}


def _record(data: Any = None, system: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"#attributes": {"xmlns": "http://schemas.microsoft.com/win/2004/08/events/event"},
                             "System": system if system is not None else SYSTEM}
    if data is not None:
        event["EventData"] = data
    event.update(extra)
    return {"Event": event}


@pytest.mark.parametrize("record", [
    _record({"Image": "C:\\Windows\\cmd.exe", "ProcessId": 7, "Initiated": True, "RuleName": None}),
    _record({"Data": ["a", "b", None]}),  # unnamed Data array
    _record({"Threat Name": "Trojan:X", "Severity ID": "5"}),  # spaced names
    _record({"Channel": "other"}),  # a name that System already has: both values kept
    _record({"Channel": None}),
    _record({"Data": {"#text": "x", "#attributes": {"Name": "Field"}}}),
    _record({"#attributes": {"Name": "x"}, "A": "b"}),
    _record({"Value": 1.5}),
    _record(None, UserData={"EventXML": {"Param": "p"}}),
    _record("plain text data"),
    _record({"A": "b"}, system={**SYSTEM, "EventID": {"#attributes": {"Qualifiers": 16384}, "#text": 4688}}),
    _record({"A": "b"}, system={**SYSTEM, "Correlation": {"#attributes": {"ActivityID": "{1}"}, "Extra": {"X": 1}}}),
    _record({"A": "b"}, system={**SYSTEM, "EventID_Qualifiers": "9",
                                "EventID": {"#attributes": {"Qualifiers": 16384}, "#text": 4688}}),
    _record({"A": "ÄÖ Σ", "B": "MiXeD ascii", "C": "already lower", "D": "", "E": "İstanbul"}),
    _record({"A": True, "B": False, "C": -12, "D": 10**30}),
    _record({"A": [1, 2]}),
    _record({"A": {"B": "c"}}),
    _record({"A": "b"}, system={**SYSTEM, "Odd#Name": "x"}),
    _record({"A": "b"}, system={**SYSTEM, "Provider": {"#attributes": {"Name": "P", "xmlns": "u", "Guid": None}}}),
    _record({"A": "b"}, system={**SYSTEM, "Provider": {"#attributes": "not a map"}}),
    _record({"A": "b"}, system={**SYSTEM, "Level": 1.5}),
    _record({"A": "b"}, system={**SYSTEM, "Computer": True}),
    _record({"A": "b"}, system="not a map"),
    _record({"A": "b"}, system={**SYSTEM, "Execution": {"#attributes": {"Spaced Name": 1}}}),
    {"System": SYSTEM, "EventData": {"A": "b"}},  # no Event wrapper
    _record({"Data": {"#text": ["a", 1, None, True]}, "Binary": None}),  # unnamed Data as pyevtx gives it
    _record({"Data": {"#text": "one"}, "Other": []}),
    _record({"Data": {"#text": None}}),
    _record({"Data": {"#text": [1.5]}}),
    _record({"Data": {"#text": "x", "Extra": "y"}}),
    _record({"Data": {"#text": [{"A": "b"}]}}),
    _record({"Image": "C:\\X.EXE"}, system={**SYSTEM, "Channel": ["A", "B"]}),
])
def test_fast_paths_equal_general_path(record: dict[str, Any]) -> None:
    general = views(flatten_evtx(record))
    assert evtx_views(record) == general
    c = speedups.evtx_views(record) if speedups is not None else None
    assert c is None or c == general  # None: the C path leaves the shape to the general one
    try:
        py = events._evtx_views_fast(record)
    except events._Unusual:
        py = None
    assert py is None or py == general


@pytest.mark.skipif(speedups is None, reason="the C extension is not built here")
def test_c_path_takes_the_usual_shape_and_lowers_only_what_has_capitals() -> None:
    record = _record({"Image": "C:\\Windows\\cmd.exe", "lower": "x.exe", "ProcessId": 7})
    out = speedups.evtx_views(record)
    assert out is not None
    low, orig, multi = out
    assert low["Image"] == "c:\\windows\\cmd.exe" and orig["Image"] == "C:\\Windows\\cmd.exe"
    assert low["lower"] is orig["lower"]  # nothing to lower: the same string, no copy
    assert orig["ProcessId"] == "7" and orig["Provider_Name"] == "Microsoft-Windows-Sysmon" and multi is False
