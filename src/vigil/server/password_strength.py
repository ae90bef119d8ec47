"""The password policy's adapters: the blocklist built from zxcvbn's shipped lists, and zxcvbn's estimate."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from zxcvbn import zxcvbn
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from vigil.core.passwords import PasswordPolicy, Strength

# zxcvbn's time grows quickly with length; past this many characters its estimate no longer changes the verdict.
_ESTIMATE_CHARS = 100
# "passwords" is zxcvbn's list of the most common passwords from breach corpora (its other lists are
# names and words, which its estimate already weighs).
_LISTS = ("passwords",)


def blocklist() -> frozenset[str]:
    return frozenset(unicodedata.normalize("NFKC", w).casefold() for name in _LISTS for w in FREQUENCY_LISTS[name])


def estimate(password: str, context: Sequence[str]) -> Strength:
    result = zxcvbn(password[:_ESTIMATE_CHARS], user_inputs=list(context))
    return Strength(int(result["score"]), str(result["feedback"].get("warning") or ""))


def password_policy(org_name: str) -> PasswordPolicy:
    """The policy the server applies to every local password it sets; the organisation's name is a context word."""
    return PasswordPolicy(blocklist(), estimate, extra_context=tuple(w for w in (org_name.casefold(),) if w))
