"""The prefilter never hides a match: each case asserts a hit that only a sound prefilter lets through, and a miss."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.detect.support import matches, ruleset_for
from vigil.detect.ir import Atom, Op
from vigil.detect.prefilter import Need, NeedKind, plan_bucket, regex_literal, requirement

CASES: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    ("case-insensitive regex: the Kelvin sign matches k but lower-cases apart",
     "selection:\n  CommandLine|re|i: 'kerberos::golden'\ncondition: selection",
     {"CommandLine": "\u212aerberos::golden"}, {"CommandLine": "kerberos::silver"}),
    ("inline (?i): long s matches s",
     "selection:\n  CommandLine|re: '(?i)sekurlsa::'\ncondition: selection",
     {"CommandLine": "\u017fekurlsa::logonpasswords"}, {"CommandLine": "sekurlsa:logon"}),
    ("cased non-ASCII literal: final sigma lower-cases differently inside a word",
     "selection:\n  CommandLine|cased|contains: 'ΑΣ'\ncondition: selection",
     {"CommandLine": "xΑΣΒx"}, {"CommandLine": "xασβx"}),
    ("regex literal inside a group repeated at least once",
     "selection:\n  CommandLine|re: '(?:evil)+payload'\ncondition: selection",
     {"CommandLine": "evilevilpayload"}, {"CommandLine": "payload"}),
    ("regex literal under an optional group is not required",
     "selection:\n  CommandLine|re: '(?:evil)?payload'\ncondition: selection",
     {"CommandLine": "payload"}, {"CommandLine": "pay load"}),
    ("many contains values use one automaton",
     "selection:\n  CommandLine|contains:\n" + "".join(f"    - 'tool{i}'\n" for i in range(40))
     + "condition: selection",
     {"CommandLine": "run TOOL39 now"}, {"CommandLine": "run tool now"}),
    ("emoji list (hundreds of short non-ASCII literals)",
     "selection:\n  CommandLine|contains:\n" + "".join(f"    - '{chr(0x1F600 + i)}'\n" for i in range(200))
     + "condition: selection",
     {"CommandLine": "echo \U0001F600\U0001F6C7"}, {"CommandLine": "echo :)"}),
    ("negation only: no requirement, runs on every event",
     "filter:\n  Image|endswith: '.exe'\ncondition: not filter",
     {"Image": "C:\\x.scr"}, {"Image": "C:\\x.exe"}),
    ("null matches an absent field",
     "selection:\n  Image|endswith: '\\x.exe'\n  ParentImage: null\ncondition: selection",
     {"Image": "C:\\x.exe"}, {"Image": "C:\\x.exe", "ParentImage": "C:\\p.exe"}),
    ("glob wildcards: the longest literal part is required",
     "selection:\n  CommandLine: '*net*user*/add*'\ncondition: selection",
     {"CommandLine": "net  user bob /ADD"}, {"CommandLine": "net user bob"}),
    ("keyword literal spanning two values does not match",
     "keywords:\n  - 'alpha beta'\ncondition: keywords",
     {"CommandLine": "x alpha beta y"}, {"CommandLine": "alpha", "Image": "beta"}),
]


@pytest.mark.parametrize(("name", "detection", "hit", "miss"), CASES, ids=[c[0] for c in CASES])
def test_prefilter_keeps_every_match(name: str, detection: str, hit: dict[str, Any], miss: dict[str, Any]) -> None:
    ruleset = ruleset_for(detection)
    assert matches(ruleset, **hit), name
    assert not matches(ruleset, **miss), name


@pytest.mark.parametrize(("pattern", "literal", "ignore_case"), [
    ("abc.*defgh", "defgh", False),
    ("(?i)abc", "abc", True),
    ("a(?:bcd)+e", "bcd", False),
    ("a(?:bcd)*e", "a", False),
    ("x|yz", "", False),
    ("(?i:abcdef)g", "g", False),  # a group with its own flags is not looked into
    ("[", "", False),  # not a regex: no literal, never an error
])
def test_regex_literal(pattern: str, literal: str, ignore_case: bool) -> None:
    assert regex_literal(pattern) == (literal, ignore_case)


def test_requirement_prefers_equality_and_skips_negation() -> None:
    eq = Atom("OriginalFileName", Op.EQ, ("psexec.c",))
    sub = Atom("CommandLine", Op.CONTAINS, ("-accepteula",))
    from vigil.detect.ir import And, Not
    assert requirement(And((sub, eq))) == frozenset({Need(NeedKind.EQ, "OriginalFileName", "psexec.c")})
    assert requirement(Not(eq)) is None
    plan = plan_bucket([(0, And((sub, eq))), (1, Not(eq))])
    assert plan.always == (1,)
    assert plan.eq == (("OriginalFileName", (("psexec.c", (0,)),)),)


def test_anchored_search_finds_exactly_what_a_plain_search_finds() -> None:
    from vigil.detect import candidates
    from vigil.detect.candidates import _search, _searcher, anchors

    literals = ["dumpcreds", "invoke-mimikatz", "mimikatz", "rpc::", "token::", "crypto::", "dpapi::",
                "sekurlsa::", "kerberos::", "lsadump::", "privilege::", "process::", "vault::", "abc"]
    cover = anchors(literals)
    assert cover == ["::", "abc", "dumpcreds", "mimikatz"]
    assert all(any(a in lit for a in cover) for lit in literals)
    table = tuple((lit, (n,)) for n, lit in enumerate(literals))
    spec = _searcher(table, candidates._speedups is not None)
    assert spec[2] is not None or spec[4] is not None  # through its anchors, or the C matcher
    for text in ["", "nothing here", "fe80::1", "x invoke-mimikatz y", "sekurlsa::logonpasswords abc",
                 "dumpcred", "mimikat", "vault:", "process::  token:: rpc::"]:
        assert sorted(_search(spec, text)) == sorted(ids for lit, ids in table if lit in text), text


def test_requirement_passes_over_common_values_for_rarer_literals() -> None:
    from vigil.detect.ir import And, Or

    # Company is "Microsoft Corporation" on most Windows processes: the image names are the better facts.
    image = Or((Atom("Image", Op.ENDSWITH, ("\\csi.exe", "\\rcsi.exe")),
                Atom("OriginalFileName", Op.EQ, ("csi.exe", "rcsi.exe"))))
    company = Atom("Company", Op.EQ, ("microsoft corporation",))
    assert {n.field for n in requirement(And((image, company))) or ()} == {"Image", "OriginalFileName"}
    # A folder every Windows path has says less than a rare command-line fragment.
    windows = Atom("Image", Op.CONTAINS, ("\\windows\\",))
    odd = Atom("CommandLine", Op.CONTAINS, (" -encodedcommand ",))
    assert requirement(And((windows, odd))) == frozenset({Need(NeedKind.SUB, "CommandLine", " -encodedcommand ")})
