"""The C hot path (`vigil.detect._speedups`) picks exactly the candidates its Python twin picks."""

from __future__ import annotations

import os
import random

import pytest

from tests.unit.detect.support import python_twin
from vigil.detect import candidates
from vigil.detect.candidates import Bucket
from vigil.detect.prefilter import BucketPlan

try:
    from vigil.detect import _speedups
except ImportError:
    _speedups = None  # type: ignore[assignment]

REQUIRED = os.environ.get("VIGIL_REQUIRE_SPEEDUPS") == "1"
needs_c = pytest.mark.skipif(_speedups is None, reason="the C extension is not built here")


def test_extension_is_built_where_required() -> None:
    if _speedups is None:
        if REQUIRED:
            pytest.fail("vigil.detect._speedups is not built (VIGIL_REQUIRE_SPEEDUPS=1): is a C compiler installed?")
        pytest.skip("the C extension is not built here; the Python path runs instead")


WORDS = ["cmd", "powershell", "-enc", "\\temp\\", "mimikatz", "::", "sekurlsa::", "whoami", "rundll32", ".dll",
         "ä", "σ", "x", "ab", "abc", "abcd", "net user", "/add", "\\\\", "iex", "http"]


# Enough literals sharing "::tail" that the table is searched through that anchor.
ANCHORED = tuple((f"{w}::tail{n}", (n,)) for n, w in enumerate(
    ["sekurlsa", "lsadump", "kerberos", "misc", "token", "vault", "rpc", "crypto", "dpapi", "process", "event",
     "privilege", "ts", "sid", "net"]))


def _plan() -> BucketPlan:
    rng = random.Random(7)

    def table(n: int) -> tuple[tuple[str, tuple[int, ...]], ...]:
        lits = sorted({rng.choice(WORDS) + rng.choice(["", "s", "2", " ", "."]) for _ in range(n)})
        return tuple((lit, tuple(sorted(rng.sample(range(60), rng.randint(1, 3))))) for lit in lits)

    return BucketPlan(
        always=(58, 59),
        eq=(("Image", (("c:\\cmd.exe", (1,)), ("x", (2, 3)))), ("EventID", (("1", (4,)),))),
        # few literals (plain search), a table big enough for an automaton, and one searched through anchors
        sub=(("CommandLine", table(6)), ("ParentImage", table(80)), ("Anchored", ANCHORED),
             (None, (("net user /add", (50,)), ("mimikatz", (51, 52))))),  # keywords: any field
        has=(("TargetFilename", (40,)), ("Missing", (41,))),
        unicode=((None, (45,)), ("CommandLine", (46,))),
    )


@needs_c
def test_c_candidates_equal_python_candidates(monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as m:
        m.setattr(candidates, "_speedups", _speedups)
        bucket = Bucket(tuple(range(60)), _plan())  # literal tables searched by the C matcher
        m.setattr(candidates, "_speedups", None)
        python = Bucket(tuple(range(60)), _plan())  # plain, anchored and automaton searches
    assert all(spec[4] is not None for _, spec in bucket.sub)
    assert python.sub[2][1][2] is not None and python.sub[1][1][3] is not None
    rng = random.Random(11)
    seen: set[int] = set()
    for _ in range(400):
        low: dict[str, str | tuple[str, ...]] = {}
        for field in ("Image", "EventID", "CommandLine", "ParentImage", "Anchored", "TargetFilename"):
            if rng.random() < 0.8:
                text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 6)))
                if field == "Image" and rng.random() < 0.3:
                    text = rng.choice(["c:\\cmd.exe", "x"])
                if field == "Anchored" and rng.random() < 0.3:
                    text += f" {rng.choice(['sekurlsa', 'vault', 'net'])}::tail{rng.randint(0, 15)}"
                low[field] = text if rng.random() < 0.85 else (text, rng.choice(WORDS))
        c = _speedups.candidates(low, bucket.lookups)
        assert c == python._found(low) == bucket._found(low), low
        assert _speedups.candidates(low, python.lookups) == c  # C given the Python path's tables: one search each
        seen |= c
    assert {45, 46, 50, 51, 40} <= seen  # the random events reached every kind of lookup


@needs_c
@pytest.mark.parametrize("seed", range(6))
def test_literal_matcher_finds_exactly_the_literals_in_a_text(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = "ab:\\.x\x00" + ("éΣ€😀" if seed % 2 else "")  # Latin-1, wider, and 4-byte characters
    literals = sorted({"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 3 + 2 * seed))) for _ in range(60)})
    matcher = _speedups.Literals(literals)
    assert len(matcher) == len(literals)
    for _ in range(300):
        text = "".join(rng.choice(alphabet + "QZ") for _ in range(rng.randint(0, 30)))
        assert matcher.find(text) == [i for i, lit in enumerate(literals) if lit in text], (literals, text)


@needs_c
@pytest.mark.parametrize(("seed", "folded"), [(0, False), (1, False), (2, True), (3, True)])
def test_literal_matcher_finds_long_literals_at_every_offset(seed: int, folded: bool) -> None:
    """Long literals are keyed once per residue of their position and looked for at every few positions of a
    text: each occurrence, wherever it starts, must still be found."""
    rng = random.Random(seed)
    alphabet = "abc:\\.k"
    shortest = 5 + 3 * seed  # strides of 2 to 11
    literals = sorted({"".join(rng.choice(alphabet) for _ in range(rng.randint(shortest, shortest + 12)))
                       for _ in range(40)})
    matcher = _speedups.Literals(literals, folded=folded)
    for _ in range(400):
        pad = "".join(rng.choice(alphabet + "XY") for _ in range(rng.randint(0, 40)))
        cut = rng.randint(0, len(pad))
        text = pad[:cut] + rng.choice(literals) + pad[cut:]  # one literal, at any offset
        if folded:
            text = "".join(c.upper() if rng.random() < 0.3 else c for c in text)
        seen = text.lower() if folded else text
        assert matcher.find(text) == [i for i, lit in enumerate(literals) if lit in seen], (literals, text)


@needs_c
@pytest.mark.parametrize("every_byte", [False, True])
def test_literal_matcher_reads_texts_with_wider_characters(every_byte: bool) -> None:
    """A text past Latin-1 is scanned as Latin-1 with its wider characters masked by a byte no literal holds;
    when literals hold every byte there is no such mask and each literal is searched on its own."""
    rng = random.Random(11)
    literals = ["é:", "a\\b", "€x", "x€", "Σ", "abc", "ab", "😀", ":\\", "b€b"]
    if every_byte:
        literals += [chr(b) for b in range(1, 256)]
    literals = sorted(set(literals))
    matcher = _speedups.Literals(literals)
    for _ in range(500):
        text = "".join(rng.choice("ab:\\é€Σ😀x\x01\xff") for _ in range(rng.randint(0, 20)))
        assert matcher.find(text) == [i for i, lit in enumerate(literals) if lit in text], text


@needs_c
@pytest.mark.parametrize("seed", range(4))
def test_folded_literal_matcher_finds_the_literals_in_the_lower_cased_text(seed: int) -> None:
    """A folded table holds lower-case literals and reads texts as str.lower() does, capitals past ASCII
    included (À, the Kelvin sign), without lower-casing Latin-1 texts first."""
    rng = random.Random(seed)
    upper = "ABK\u00c0\u00de\u00d7\u212a\u0130"
    lower = "abk\u00e0\u00fe\u00f7\u00df:\\| @`"
    literals = sorted({"".join(rng.choice(lower) for _ in range(rng.randint(0, 5))) for _ in range(50)})
    literals += ["k\u03c3", "\u03c3"]  # wide ones
    matcher = _speedups.Literals(literals, folded=True)
    for _ in range(400):
        text = "".join(rng.choice(upper + lower + "\u03a3") for _ in range(rng.randint(0, 24)))
        assert matcher.find(text) == [i for i, lit in enumerate(literals) if lit in text.lower()], text
    with pytest.raises(ValueError, match="lower-case"):
        _speedups.Literals(["abC"], folded=True)


@needs_c
def test_literal_matcher_rejects_what_is_not_text() -> None:
    with pytest.raises(TypeError, match="literal 1 is not a str"):
        _speedups.Literals(["a", 2])
    with pytest.raises(TypeError, match="needs a str"):
        _speedups.Literals(["a"]).find(b"a")


@needs_c
def test_c_candidates_reject_malformed_tables() -> None:
    with pytest.raises(TypeError, match="6-tuple"):
        _speedups.candidates({}, ((), (), ()))
    with pytest.raises(TypeError, match="must be tuples"):
        _speedups.candidates({}, ((), [], (), (), (), None))  # a list where a tuple is required
    with pytest.raises(TypeError, match="tuple"):
        _speedups.candidates({"F": "v"}, ((), (("F", {"v": [1]}),), (), (), (), None))  # ids must be a tuple
    with pytest.raises(ValueError, match="binding index"):
        _speedups.candidates({"F": "v"}, ((), (("F", {"v": (-1,)}),), (), (), (), None))
    with pytest.raises(TypeError):
        _speedups.candidates({}, ((0, "1"), (), (), (), (), None))


@needs_c
def test_c_candidates_hold_any_number_of_bindings() -> None:
    """Past the first buffers (4,096 bindings, 128 candidates) the marks grow; each id is given once."""
    many = tuple(range(0, 100_000, 7))
    table = {"v": many, "w": (*many[::2], 99_999)}
    found = _speedups.candidates({"F": "v", "G": "w"}, (many[:10], (("F", table), ("G", table)), (), (), (), None))
    assert found == set(many) | {99_999}


@needs_c
def test_run_rejects_malformed_trees_and_specs() -> None:
    lookups = (frozenset({0}), (), (), (), (), None)  # binding 0 always a candidate
    low = {"F": "x"}
    for trees, specs in [
        ([("a", 0)], [(1, False, frozenset({"x"}))]),  # an atom without its field
        ([("?", ())], [(1, False, frozenset({"x"}))]),  # an unknown node
        ([("", ())], []),
        ([("&", [("a", 0, "F")])], [(1, False, frozenset({"x"}))]),  # children in a list
        ([("a", 0, "F")], [(1, False)]),  # a short spec
        ([("a", 0, "F")], [(2, False, "x")]),  # contains needs a tuple of literals
        ([("a", 0, "F")], [(1, False, ("x",))]),  # equality needs a set
        ([("a", 5, "F")], [(1, False, frozenset({"x"}))]),  # no such atom
    ]:
        with pytest.raises((TypeError, IndexError, SystemError)):
            _speedups.run(low, low, lookups, trees, specs, [lambda *a: True] * len(specs))
    assert _speedups.run(low, low, lookups, [("a", 0, "F")], [(1, False, frozenset({"x"}))], [None]) == [0]


def _hostile(rng: random.Random, depth: int = 0) -> object:
    pick = rng.random()
    if depth > 2 or pick < 0.45:
        return rng.choice(["", "A", "MiXeD", "é", "Σ", "😀", "\x00", 0, 7, -1, 10**20, 1.5, True, False, None])
    if pick < 0.7:
        return [_hostile(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    keys = ["#text", "#attributes", "Name", "Channel", "EventID", "A B", "x#y", "xmlns", "Data", "UserData"]
    return {rng.choice(keys): _hostile(rng, depth + 1) for _ in range(rng.randint(0, 4))}


@needs_c
def test_hostile_records_match_as_the_general_path_does() -> None:
    """Whatever shape a record has, the C path gives the general path's views or leaves it to it, and a rule
    set matches it as the pure-Python engine does: an EVTX file from an attacker can not crash the scan."""
    from tests.unit.detect.support import ruleset_for
    from vigil.detect.events import flatten_evtx, views

    rules = ruleset_for("""
        selection:
            Name|contains: 'mixed'
        condition: selection
    """, logsource="product: windows\nservice: sysmon")
    python = python_twin(rules)
    rng = random.Random(5)
    fired = fast_shapes = 0
    for _ in range(3000):
        record: dict[str, object] = {"Event": {
            "System": {"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1,
                       **{k: _hostile(rng) for k in rng.sample(["Provider", "Computer", "Name", "A B"], 2)}},
            "EventData": _hostile(rng) if rng.random() < 0.3 else {k: _hostile(rng) for k in ("Name", "Data", "x")},
        }}
        if rng.random() < 0.5:  # UserData: nested elements; EventData too at times
            record["Event"]["UserData"] = _hostile(rng) if rng.random() < 0.3 else {"Element": _hostile(rng)}  # type: ignore[index]
            if rng.random() < 0.7:
                del record["Event"]["EventData"]  # type: ignore[attr-defined]
        try:
            general = views(flatten_evtx(record))
        except (AttributeError, TypeError):
            general = None  # a shape the general path rejects too
        fast = _speedups.evtx_views(record)
        if fast is not None:
            assert fast == general, record
            fast_shapes += 1
        try:
            c_hits = rules.match_evtx_event(record)
        except (AttributeError, TypeError):
            assert general is None
            continue
        py_hits = python.match_evtx_event(record)
        assert c_hits == py_hits, record
        fired += bool(c_hits[0])
    assert fired > 50 and fast_shapes > 20  # the records reached both paths and the rule


@needs_c
def test_user_data_records_take_the_c_path_with_the_general_paths_views() -> None:
    """UserData (log cleared, RDP sessions...): nested elements' leaves by name, attributes but xmlns, an
    element's #text under its name. Shapes the general path renames or gathers stay with it."""
    from vigil.detect.events import flatten_evtx, views

    system = {"Channel": "Security", "EventID": 1102, "Computer": "dc1", "Execution": {"#attributes": {"ProcessID": 4}}}
    usual = [
        {"LogFileCleared": {"#attributes": {"xmlns": "http://x"}, "SubjectUserSid": "S-1-5-18", "SubjectLogonId": 999}},
        {"EventXML": {"#attributes": {"xmlns": "Event_NS"}, "User": "CORP\\bob", "SessionID": 3,
                      "Address": {"#text": "10.0.0.5", "#attributes": {"Port": 3389, "xmlns": "y"}}, "Flag": True}},
        {"Outer": {"Inner": {"Deep": "x", "Empty": None}, "Names": ["a", None, "b", 7]}},
        {"Element": {"#text": None, "Kept": "y"}},
    ]
    for user in usual:
        record = {"Event": {"System": system, "UserData": user}}
        fast = _speedups.evtx_views(record)
        assert fast is not None, user
        assert fast == views(flatten_evtx(record)), user
    left = [
        {"A": {"Dup": 1}, "B": {"Dup": 2}},  # a name twice: the general path makes a list
        {"A": {"Two Words": 1}},  # renamed by the general path
        {"Rows": [{"X": 1}, {"X": 2}]},  # a list of elements
        {"A": {"#attributes": "not a map"}},
        {"A": {"Computer": "again"}},  # a name System has
    ]
    for user in left:
        assert _speedups.evtx_views({"Event": {"System": system, "UserData": user}}) is None, user


@needs_c
@pytest.mark.parametrize("seed", range(3))
def test_contains_of_a_few_literals_answers_as_substring_search_does(seed: int) -> None:
    """A contains test of up to ten literals searches each in C (first byte, then the rest), on texts that repeat
    the literals' first bytes and end on partial matches."""
    from tests.unit.detect.support import ruleset_for, sysmon

    rng = random.Random(seed)
    alphabet = "/ab."  # no backslash: a Sigma value reads two as one
    literals = sorted({"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 5))) for _ in range(6)})
    rules = ruleset_for("selection:\n  CommandLine|contains:\n" + "".join(f"    - '{x}'\n" for x in literals)
                        + "condition: selection")
    fired = 0
    for _ in range(1500):
        text = "".join(rng.choice(alphabet + "X") for _ in range(rng.randint(0, 12)))
        want = any(x in text.lower() for x in literals)
        assert bool(rules.match_windows(sysmon(CommandLine=text))) is want, (literals, text)
        fired += want
    assert 20 < fired < 1400


@needs_c
def test_names_with_spaces_take_the_c_path_renamed_as_the_general_path_does() -> None:
    """Defender writes "Threat Name"; Sigma rules write ThreatName, as the general path renames it."""
    from tests.unit.detect.support import ruleset_for
    from vigil.detect.events import flatten_evtx, views

    system = {"Channel": "Microsoft-Windows-Windows Defender/Operational", "EventID": 1116, "Computer": "ws1"}
    data = {"Threat Name": "HackTool:Win32/Mimikatz", "Severity Name": "High", "Path": "C:\\t\\m.exe"}
    record = {"Event": {"System": system, "EventData": data}}
    fast = _speedups.evtx_views(record)
    assert fast is not None and fast == views(flatten_evtx(record))
    assert fast[1]["ThreatName"] == "HackTool:Win32/Mimikatz" and "Threat Name" not in fast[1]
    for clash in ({"A B": "1", "AB": "2"}, {"Com puter": "x"}):  # the same name twice: the general path's list
        assert _speedups.evtx_views({"Event": {"System": system, "EventData": clash}}) is None, clash
    rules = ruleset_for("selection:\n  ThreatName|contains: 'mimikatz'\ncondition: selection",
                        logsource="product: windows\nservice: windefend")
    hits, _ = rules.match_evtx_event(record)
    assert [h.matched_fields for h in hits] == [("ThreatName",)]


@needs_c
def test_records_of_many_fields_match_as_the_general_path_does() -> None:
    """The C path indexes a record's fields itself, in room for 64 before it grows: records past that, with
    names that collide in System or with EventData, match and flatten as the general path has them."""
    from tests.unit.detect.support import ruleset_for
    from vigil.detect.events import flatten_evtx, views

    rules = ruleset_for("""
        selection:
            F0: 'value 0'
            F1|endswith: ' 1'
            F150|endswith: 'tail'
            Computer: 'ws1'
        condition: selection
    """, logsource="product: windows\nservice: sysmon")
    python = python_twin(rules)
    for n in (10, 63, 64, 65, 200, 600):
        data = {f"F{i}": f"value {i}" for i in range(n)} | {"F150": "the tail"}
        system = {"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1, "Computer": "ws1"}
        for clash in (None, "Computer"):  # a name in both System and EventData: the general path's list
            record = {"Event": {"System": system, "EventData": data | ({clash: "x"} if clash else {})}}
            hits, flat = rules.match_evtx_event(record)
            assert (hits, flat) == python.match_evtx_event(record), (n, clash)
            assert flat == views(flatten_evtx(record))[1]
            # with the clash, Computer is a list that holds 'ws1' too
            assert [h.matched_fields for h in hits] == [("Computer", "F0", "F1", "F150")], (n, clash)


def _condition(rng: random.Random, depth: int = 0) -> str:
    if depth > 2 or rng.random() < 0.35:
        return rng.choice(["s1", "s2", "s3", "s4", "1 of s*", "all of s*"])
    if rng.random() < 0.2:
        return f"not ({_condition(rng, depth + 1)})"
    joiner = rng.choice([" and ", " or "])
    return "(" + joiner.join(_condition(rng, depth + 1) for _ in range(rng.randint(2, 3))) + ")"


@needs_c
@pytest.mark.parametrize("seed", range(4))
def test_evidence_traced_while_matching_is_the_general_paths(seed: int) -> None:
    """The C path records a hit's evidence (the fields whose tests held, outside negations) during the match
    itself; it must be what the Python tree walker traces, through any nesting of and, or and not."""
    from tests.unit.detect.support import ruleset_for

    rng = random.Random(seed)
    fields = {"s1": "Image", "s2": "CommandLine", "s3": "ParentImage", "s4": "User"}
    values = ["a", "b", "ab", "x"]
    compared = 0
    for _ in range(25):
        selections = "".join(f"{s}:\n  {f}|contains: '{rng.choice(values)}'\n" for s, f in fields.items())
        rules = ruleset_for(f"{selections}condition: {_condition(rng)}", logsource="product: windows\nservice: sysmon")
        for _ in range(40):
            data = {f: rng.choice(["", "a", "b", "ab", "zz"]) for f in fields.values() if rng.random() < 0.8}
            record = {"Event": {"System": {"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1},
                                "EventData": data}}
            c_hits = rules.match_evtx_record(record)
            py_hits = python_twin(rules).match_evtx_record(record)
            assert [h.matched_fields for h in c_hits] == [h.matched_fields for h in py_hits], (record, rules)
            compared += bool(c_hits)
    assert compared > 100


@needs_c
def test_scanning_records_holds_no_memory_per_record() -> None:
    """Every object the C matcher makes per record is released: records that hit, that nothing hits, that
    take the general path, that hold wide characters, and a scan that stops on a decode error."""
    import gc
    import sys

    import orjson

    from tests.unit.detect.support import ruleset_for
    from vigil.detect import ruleset as ruleset_module

    if ruleset_module._speedups is None:
        pytest.skip("the C matcher's memory: this run has it switched off")
    rules = ruleset_for("selection:\n  CommandLine|contains: 'whoami'\nkw:\n  - 'mimikatz'\n"
                        "condition: selection or kw")

    def record(data: dict[str, object], **system: object) -> dict[str, str]:
        event = {"Event": {"System": {"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1, **system},
                           "EventData": data}}
        return {"data": orjson.dumps(event).decode()}

    records = [record({"CommandLine": "WHOAMI /all", "Image": "C:\\x.exe"}), record({"CommandLine": "dir"}),
               record({"CommandLine": "Σ mimikatz"}), record({"CommandLine": ["a", "whoami"]}),
               {"data": orjson.dumps({"Event": {"System": {"Channel": "x"}, "UserData": {"A": {"B": 1}}}}).decode()}]
    broken = [*records, {"data": "{not json"}]

    def scan_many() -> None:
        for _ in range(300):
            rules.scan_evtx(iter(records), orjson.loads)
            rules.scan_evtx(iter(broken), orjson.loads)

    scan_many()  # caches (routes, hits, joined names) filled once
    gc.collect()
    before = sys.getallocatedblocks()
    scan_many()
    gc.collect()
    assert sys.getallocatedblocks() - before < 100  # 3,600 records and 300 errors: a leak would show thousands
