"""The NIST SP 800-63B password policy: length, blocklist, context words, strength estimate, no composition rules."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

MIN_LENGTH = 12
MAX_LENGTH = 256
# Words that name this service: a password built on them is the first an attacker tries here.
SERVICE_WORDS = ("vigil", "defender", "endpoint", "admin", "administrator")

# What a guesser undoes first: digits and symbols stuck on either end, and l33t spellings.
_EDGES = re.compile(r"^[\W\d_]+|[\W\d_]+$")
_LEET = str.maketrans({"0": "o", "1": "l", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"})
# What must remain, in letters and digits, once the context words are taken out of a password.
_MIN_REST = 6


@dataclass(frozen=True)
class Strength:
    """An estimator's verdict: 0 (guessed at once) to 4 (very hard to guess), and why."""

    score: int
    warning: str = ""


# The estimator is injected (zxcvbn in the server) so that this module stays pure and testable.
Estimator = Callable[[str, Sequence[str]], Strength]


class WeakPassword(ValueError):
    """A password the policy refuses; the message says what is wrong with it."""


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def context_words(*values: str | None) -> tuple[str, ...]:
    """The words a password must not be built on: the service's names and the account's own (name, e-mail parts)."""
    words = list(SERVICE_WORDS)
    for value in values:
        if not value:
            continue
        words.append(_fold(value))
        words += [p for p in re.split(r"[\W_]+", _fold(value)) if len(p) >= 3]
    return tuple(dict.fromkeys(words))


@dataclass(frozen=True)
class PasswordPolicy:
    """Checks a new password; ``blocklist`` holds case-folded common and breached passwords."""

    blocklist: frozenset[str]
    estimator: Estimator
    min_length: int = MIN_LENGTH
    max_length: int = MAX_LENGTH
    min_score: int = 3
    extra_context: tuple[str, ...] = field(default_factory=tuple)

    def check(self, password: str, context: Iterable[str] = ()) -> None:
        """Raises WeakPassword naming the first thing wrong; returns when the password is acceptable."""
        # Length counts characters as a person typed them (NFKC), not bytes (SP 800-63B §5.1.1.2).
        n = len(unicodedata.normalize("NFKC", password))
        if n < self.min_length:
            raise WeakPassword(f"this password is too short: use at least {self.min_length} characters (it has {n})")
        if n > self.max_length:
            raise WeakPassword(f"this password is too long: use at most {self.max_length} characters (it has {n})")
        folded = _fold(password)
        if folded in self.blocklist:
            raise WeakPassword("this password is in the list of common passwords")
        core = _EDGES.sub("", folded)
        if core != folded and (core in self.blocklist or core.translate(_LEET) in self.blocklist):
            raise WeakPassword("this password is a common password with a few characters added")
        if folded.translate(_LEET) in self.blocklist:
            raise WeakPassword("this password is a common password with letters swapped for digits or symbols")
        words = tuple(w for w in (*self.extra_context, *context) if len(w) >= 3)
        rest = folded.translate(_LEET)
        used = []
        for w in sorted(words, key=len, reverse=True):
            if w in folded or w in rest:
                used.append(w)
                folded, rest = folded.replace(w, ""), rest.replace(w, "")
        left = min(len(re.sub(r"[\W_]+", "", folded)), len(re.sub(r"[\W_]+", "", rest)))
        if used and left < _MIN_REST:
            raise WeakPassword(f"this password is built on a word that names this service or account ({used[0]!r})")
        strength = self.estimator(password, words)
        if strength.score < self.min_score:
            why = f": {strength.warning.rstrip('.')}" if strength.warning else ""
            raise WeakPassword(f"this password is too easy to guess{why}; a few uncommon words make a strong one")
