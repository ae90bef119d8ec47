"""Attack surface reduction: the Linux rule catalogue, modes, exclusions, policy and the what-if replay (pure)."""

from vigil.asr.model import AsrDecision, AsrMode, AsrPolicy, AsrPolicySet, AsrRule, Exclusion, Row, evaluate
from vigil.asr.rules import RULES, DuplicateAsrRule, UnknownAsrRule, catalogue, find

__all__ = [
    "RULES",
    "AsrDecision",
    "AsrMode",
    "AsrPolicy",
    "AsrPolicySet",
    "AsrRule",
    "DuplicateAsrRule",
    "Exclusion",
    "Row",
    "UnknownAsrRule",
    "catalogue",
    "evaluate",
    "find",
]
