"""The fused EVTX fast path gives exactly what the general flatten + views path gives, on every shape."""

from __future__ import annotations

from typing import Any

import pytest

from vigil.detect.events import evtx_views, flatten_evtx, views

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
    _record({"A": "ÄÖ Σ"}),
])
def test_fast_path_equals_general_path(record: dict[str, Any]) -> None:
    assert evtx_views(record) == views(flatten_evtx(record))
