"""Vigil's Sigma engine: load SigmaHQ-format rules, compile them once, match events fast.

Public API::

    report = load_rules([Path("rules/")])      # LoadReport(ruleset, errors, notes)
    report.ruleset.match_telemetry("DeviceProcessEvents", row)   # -> list[RuleHit]
    report.ruleset.match_windows(flat_event)                     # -> list[RuleHit]
"""

from vigil.detect.events import flatten_evtx
from vigil.detect.load import LoadReport, load_rules, load_rules_text
from vigil.detect.model import (
    AbsentFields,
    ErrorKind,
    LogSource,
    RuleFilter,
    RuleHit,
    RuleInfo,
    RuleLoadError,
    RuleNote,
)
from vigil.detect.ruleset import CompiledRules, RuleSet, native_matching

__all__ = [
    "AbsentFields",
    "CompiledRules",
    "ErrorKind",
    "LoadReport",
    "LogSource",
    "RuleFilter",
    "RuleHit",
    "RuleInfo",
    "RuleLoadError",
    "RuleNote",
    "RuleSet",
    "flatten_evtx",
    "load_rules",
    "load_rules_text",
    "native_matching",
]
