"""The password policy: length, blocklist (with edges and l33t undone), context words, the estimator's verdict."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from vigil.core.passwords import PasswordPolicy, Strength, WeakPassword, context_words


def _estimate(password: str, context: Sequence[str]) -> Strength:
    # A stand-in that calls anything with fewer than 3 distinct characters weak, so the tests name their cause.
    return Strength(0 if len(set(password)) < 3 else 4, "Repeats are easy to guess.")


POLICY = PasswordPolicy(frozenset({"dragon", "password", "qwertyuiop12"}), _estimate)


@pytest.mark.parametrize(("password", "why"), [
    ("x1y2z3", "too short: use at least 12 characters (it has 6)"),
    ("é" * 257, "too long: use at most 256 characters (it has 257)"),
    ("QwertyUiop12", "in the list of common passwords"),
    ("Dragon!!2026!", "a common password with a few characters added"),
    ("p4ssw0rd!!!!", "a common password with a few characters added"),
    ("vigil-2026-alice", "built on a word that names this service or account ('vigil')"),
    ("alice.smith.1990", "built on a word that names this service or account ('alice.smith')"),
    ("abababababababab", "too easy to guess: Repeats are easy to guess"),
])
def test_refused_passwords_say_why(password: str, why: str) -> None:
    with pytest.raises(WeakPassword) as e:
        POLICY.check(password, context_words("alice.smith", "alice.smith@example.org"))
    assert str(e.value) == f"this password {why}" or why in str(e.value)


@pytest.mark.parametrize("password", [
    "vigil keeps the night watch", "correct horse battery staple", "Tr0ub4dor&3-xylophone", "a" * 10 + "bcdefg",
])
def test_long_or_unusual_passwords_pass_without_composition_rules(password: str) -> None:
    POLICY.check(password, context_words("alice", None))


def test_length_counts_characters_not_bytes() -> None:
    POLICY.check("ñandú-çedilla", ())  # 13 characters, more bytes
    with pytest.raises(WeakPassword, match="it has 11"):
        POLICY.check("ñandú-çedil", ())
