"""Automated investigation and remediation (AIR): evidence, verdicts, playbooks and automation levels; pure."""

from vigil.air.levels import AutomationLevel, FolderClass, classify_folder, decide
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
from vigil.air.verdicts import Signals, judge

__all__ = [
    "AutomationLevel", "Entity", "EntityKind", "EntityVerdict", "FolderClass", "InvestigationState", "Reason",
    "Remediation", "RemediationDecision", "RemediationKind", "Signals", "Verdict", "classify_folder", "decide",
    "judge",
]
