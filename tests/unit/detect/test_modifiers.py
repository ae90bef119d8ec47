"""Conformance of each Sigma value modifier: every case asserts a match and a non-match."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.unit.detect.support import matches, ruleset_for

CASES: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    ("plain equality is case-insensitive",
     "selection:\n  Image: 'C:\\Windows\\System32\\cmd.exe'\ncondition: selection",
     {"Image": "c:\\windows\\system32\\CMD.EXE"}, {"Image": "C:\\Windows\\System32\\cmd.exe.bak"}),
    ("contains",
     "selection:\n  CommandLine|contains: 'whoami'\ncondition: selection",
     {"CommandLine": "cmd /c WHOAMI /all"}, {"CommandLine": "cmd /c who ami"}),
    ("startswith",
     "selection:\n  CommandLine|startswith: 'powershell'\ncondition: selection",
     {"CommandLine": "PowerShell -nop"}, {"CommandLine": "x powershell"}),
    ("endswith",
     "selection:\n  Image|endswith: '\\rundll32.exe'\ncondition: selection",
     {"Image": "C:\\Windows\\SysWOW64\\rundll32.exe"}, {"Image": "C:\\rundll32.exe.tmp"}),
    ("list values are OR-linked",
     "selection:\n  Image|endswith:\n    - '\\a.exe'\n    - '\\b.exe'\ncondition: selection",
     {"Image": "C:\\b.exe"}, {"Image": "C:\\c.exe"}),
    ("contains one of many values (searched in one pass)",
     "selection:\n  CommandLine|contains:\n" + "".join(f"    - 'tool{i}.exe'\n" for i in range(14))
     + "condition: selection",
     {"CommandLine": "run TOOL13.EXE now"}, {"CommandLine": "run tool14.exe or tool1.ex"}),
    ("all links list values with AND",
     "selection:\n  CommandLine|contains|all:\n    - 'net'\n    - 'user'\ncondition: selection",
     {"CommandLine": "net user bob /add"}, {"CommandLine": "net group"}),
    ("re is an unanchored search",
     "selection:\n  CommandLine|re: 'who.mi'\ncondition: selection",
     {"CommandLine": "cmd /c whoami /all"}, {"CommandLine": "cmd /c who_ami"}),
    ("re is case-sensitive by default",
     "selection:\n  CommandLine|re: 'whoami'\ncondition: selection",
     {"CommandLine": "whoami"}, {"CommandLine": "WHOAMI"}),
    ("re|i ignores case",
     "selection:\n  CommandLine|re|i: '^whoami$'\ncondition: selection",
     {"CommandLine": "WhoAmI"}, {"CommandLine": "whoami /all"}),
    ("re|m makes ^ match at line starts",
     "selection:\n  CommandLine|re|m: '^second'\ncondition: selection",
     {"CommandLine": "first\nsecond"}, {"CommandLine": "first second"}),
    ("re|s lets . match newlines",
     "selection:\n  CommandLine|re|s: 'a.b'\ncondition: selection",
     {"CommandLine": "a\nb"}, {"CommandLine": "a\n\nb"}),
    ("base64 encodes the value",
     "selection:\n  CommandLine|base64|contains: 'whoami'\ncondition: selection",
     {"CommandLine": "echo " + base64.b64encode(b"whoami").decode()},
     {"CommandLine": "echo " + base64.b64encode(b"xwhoami").decode()}),
    ("cased compares case-sensitively",
     "selection:\n  CommandLine|cased: 'Whoami'\ncondition: selection",
     {"CommandLine": "Whoami"}, {"CommandLine": "whoami"}),
    ("cased with contains",
     "selection:\n  CommandLine|contains|cased: 'PowerShell'\ncondition: selection",
     {"CommandLine": "x PowerShell y"}, {"CommandLine": "x powershell y"}),
    ("exists true",
     "selection:\n  ParentImage|exists: true\ncondition: selection",
     {"ParentImage": ""}, {"Image": "x"}),
    ("exists false",
     "selection:\n  ParentImage|exists: false\ncondition: selection",
     {"Image": "x"}, {"ParentImage": "C:\\p.exe"}),
    ("fieldref equality",
     "selection:\n  ParentImage|fieldref: Image\ncondition: selection",
     {"Image": "C:\\a.exe", "ParentImage": "c:\\A.exe"}, {"Image": "C:\\a.exe", "ParentImage": "C:\\b.exe"}),
    ("fieldref with contains",
     "selection:\n  CommandLine|fieldref|contains: User\ncondition: selection",
     {"CommandLine": "runas bob x", "User": "bob"}, {"CommandLine": "runas alice", "User": "bob"}),
    ("lt", "selection:\n  ProcessId|lt: 100\ncondition: selection", {"ProcessId": 4}, {"ProcessId": 100}),
    ("lte", "selection:\n  ProcessId|lte: 100\ncondition: selection", {"ProcessId": "100"}, {"ProcessId": 101}),
    ("gt", "selection:\n  ProcessId|gt: 100\ncondition: selection", {"ProcessId": 101}, {"ProcessId": "abc"}),
    ("gte", "selection:\n  ProcessId|gte: 100\ncondition: selection", {"ProcessId": 100}, {"ProcessId": 99}),
    ("multi wildcard inside a value",
     # a backslash before a wildcard must itself be escaped: `\\*` is a backslash then any text
     "selection:\n  Image: 'C:\\Users\\\\*\\AppData\\\\*.exe'\ncondition: selection",
     {"Image": "C:\\Users\\bob\\AppData\\x.exe"}, {"Image": "C:\\Users\\bob\\Desktop\\x.exe"}),
    ("single wildcard",
     "selection:\n  Image|endswith: '\\svch?st.exe'\ncondition: selection",
     {"Image": "C:\\svchost.exe"}, {"Image": "C:\\svchoost.exe"}),
    ("escaped backslash is one backslash",
     "selection:\n  CommandLine: 'a\\\\b'\ncondition: selection",
     {"CommandLine": "a\\b"}, {"CommandLine": "a\\\\b"}),
    ("escaped star is a literal star",
     "selection:\n  CommandLine: 'a\\*b'\ncondition: selection",
     {"CommandLine": "a*b"}, {"CommandLine": "axb"}),
    ("null matches a missing or empty field",
     "selection:\n  CommandLine: null\ncondition: selection",
     {"Image": "x"}, {"CommandLine": "x"}),
    ("neq negates the item",
     "selection:\n  Image|neq: 'a.exe'\n  CommandLine|contains: x\ncondition: selection",
     {"Image": "b.exe", "CommandLine": "x"}, {"Image": "A.EXE", "CommandLine": "x"}),
]


@pytest.mark.parametrize(("name", "detection", "hit", "miss"), CASES, ids=[c[0] for c in CASES])
def test_modifier(name: str, detection: str, hit: dict[str, Any], miss: dict[str, Any]) -> None:
    ruleset = ruleset_for(detection)
    assert matches(ruleset, **hit), f"{name}: expected a match on {hit}"
    assert not matches(ruleset, **miss), f"{name}: expected no match on {miss}"


@pytest.mark.parametrize("prefix", [b"", b"a", b"ab", b"abc "])
def test_base64offset_matches_at_every_offset(prefix: bytes) -> None:
    ruleset = ruleset_for("selection:\n  CommandLine|base64offset|contains: 'whoami /all'\ncondition: selection")
    encoded = base64.b64encode(prefix + b"whoami /all trailing").decode()
    assert matches(ruleset, CommandLine=f"powershell -enc {encoded}")
    assert not matches(ruleset, CommandLine="powershell -enc " + base64.b64encode(prefix + b"whoami").decode())


@pytest.mark.parametrize(("modifier", "encoding"), [("wide", "utf-16le"), ("utf16le", "utf-16le"),
                                                    ("utf16be", "utf-16be")])
def test_utf16_then_base64offset(modifier: str, encoding: str) -> None:
    ruleset = ruleset_for(
        f"selection:\n  CommandLine|{modifier}|base64offset|contains: 'Invoke-Mimikatz'\ncondition: selection")
    for prefix in ("", "x", "xy"):
        blob = base64.b64encode((prefix + "Invoke-Mimikatz -x").encode(encoding)).decode()
        assert matches(ruleset, CommandLine=f"powershell -e {blob}")
    other = base64.b64encode(b"Invoke-Mimikatz").decode()
    assert not matches(ruleset, CommandLine=f"powershell -e {other}")


def test_utf16_adds_a_byte_order_mark() -> None:
    ruleset = ruleset_for("selection:\n  CommandLine|utf16|base64|contains: 'ping'\ncondition: selection")
    assert matches(ruleset, CommandLine="x " + base64.b64encode("\ufeffping".encode("utf-16le")).decode())
    assert not matches(ruleset, CommandLine="x " + base64.b64encode("ping".encode("utf-16le")).decode())


@pytest.mark.parametrize("dash", ["-", "/", "\u2013", "\u2014", "\u2015"])
def test_windash_expands_every_dash(dash: str) -> None:
    ruleset = ruleset_for("selection:\n  CommandLine|windash|contains: ' -enc '\ncondition: selection")
    assert matches(ruleset, CommandLine=f"powershell {dash}enc AAAA")
    assert not matches(ruleset, CommandLine="powershell +enc AAAA")


@pytest.mark.parametrize(("ip", "expected"), [("10.1.2.3", True), ("11.0.0.1", False), ("fd00::1", True),
                                              ("fe80::1", False), ("not-an-ip", False)])
def test_cidr(ip: str, expected: bool) -> None:
    ruleset = ruleset_for(
        "selection:\n  DestinationIp|cidr:\n    - 10.0.0.0/8\n    - fd00::/8\ncondition: selection",
        logsource="product: windows\ncategory: network_connection")
    event = {"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 3, "DestinationIp": ip}
    assert bool(ruleset.match_windows(event)) is expected


def test_re_flags_combine_with_list() -> None:
    ruleset = ruleset_for("selection:\n  CommandLine|re|i:\n    - 'foo\\d+'\n    - '^bar'\ncondition: selection")
    assert matches(ruleset, CommandLine="xx FOO12")
    assert matches(ruleset, CommandLine="BAR x")
    assert not matches(ruleset, CommandLine="x bar")
