"""Automated investigation and remediation (AIR): evidence, verdicts, playbooks and automation levels; pure."""

from vigil.air.levels import LABELS, FolderClass, classify_folder, decide, parse_level
from vigil.air.model import (
    Entity,
    EntityKind,
    EntityVerdict,
    InvestigationState,
    Reason,
    Remediation,
    RemediationDecision,
    RemediationKind,
    Verdict,
)
from vigil.air.verdicts import Signals, judge, judge_related

__all__ = [
    "LABELS", "Entity", "EntityKind", "EntityVerdict", "FolderClass", "InvestigationState", "Reason",
    "Remediation", "RemediationDecision", "RemediationKind", "Signals", "Verdict", "classify_folder", "decide",
    "judge", "judge_related", "parse_level",
]
