"""`re` patterns made of literals and `.*` gaps are searched without `re`: the answer must stay re's."""

from __future__ import annotations

import random
import re

import pytest

from tests.unit.detect.support import matches, ruleset_for
from vigil.detect.runtime import _gapped_literals, regex_search

PATTERNS = [
    r"\+.*\+.*\+.*\+", r"\{.*\{.*\{", r"`.*`.*`", r"ab.*?cd", r"a.*", r".*a", r"iex.*downloadstring",
    r"K.*s", r"xx", r"a\.b.*c", r"(?i)ab.*cd", r"(?s)a.*b",
]
ALPHABET = "ab+{`cdkKsS\n xi.\u212a\u017f\u0130"  # newlines, and letters that fold differently past ASCII


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("flags", [0, re.IGNORECASE, re.DOTALL, re.IGNORECASE | re.DOTALL | re.MULTILINE])
def test_literal_gap_patterns_answer_as_re_does(pattern: str, flags: int) -> None:
    assert _gapped_literals(pattern, flags) is not None, "this pattern should take the literal path"
    test, reference = regex_search(pattern, flags), re.compile(pattern, flags)
    rng = random.Random(f"{pattern}{flags}")
    for _ in range(3000):
        text = "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(0, 24)))
        assert test(text) is (reference.search(text) is not None), (pattern, flags, text)


OTHERS = [r"a.+b", r"^a.*b", r"a.*b$", r"a\d.*b", r"(a).*b", r"a|b", r"", r".*", r"(?i)\u017fx"]


@pytest.mark.parametrize("pattern", OTHERS)
def test_other_patterns_stay_with_re(pattern: str) -> None:
    assert _gapped_literals(pattern, 0) is None
    test, reference = regex_search(pattern, 0), re.compile(pattern)
    for text in ["", "ab", "a\nb", "xa1yb", "b a"]:
        assert test(text) is (reference.search(text) is not None)


def test_a_gap_does_not_cross_a_line_unless_dotall() -> None:
    assert not regex_search(r"\^.*\^.*\^", 0)("^ ^\n^")
    assert regex_search(r"\^.*\^.*\^", re.DOTALL)("^ ^\n^")
    assert regex_search(r"\^.*\^.*\^", 0)("x\n^^ ^")


def test_a_counting_rule_fires_on_a_long_command_line() -> None:
    ruleset = ruleset_for("selection:\n  CommandLine|re: '\\+.*\\+.*\\+.*\\+.*\\+'\ncondition: selection")
    assert matches(ruleset, CommandLine="'a'+'b'+'c'+'d'+'e'+'f'" + " " * 20000)
    assert not matches(ruleset, CommandLine="'a'+'b'+'c'+'d'+'e'" + " " * 20000)  # four
    assert not matches(ruleset, CommandLine="+ + +\n+ +")
