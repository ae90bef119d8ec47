"""MITRE ATT&CK vocabulary for alerts: tactics as Defender's alert categories, technique ids from Sigma tags."""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum


class AttackTactic(StrEnum):
    """ATT&CK tactics, valued with the category names Defender shows on alerts.

    Defender has no "Impact" category of its own; its closest, "Ransomware", is narrower than
    ATT&CK's Impact (wipers, defacement, resource hijacking), so Impact keeps its ATT&CK name.
    """

    RECONNAISSANCE = "Reconnaissance"
    RESOURCE_DEVELOPMENT = "Resource development"
    INITIAL_ACCESS = "Initial access"
    EXECUTION = "Execution"
    PERSISTENCE = "Persistence"
    PRIVILEGE_ESCALATION = "Privilege escalation"
    DEFENSE_EVASION = "Defense evasion"
    CREDENTIAL_ACCESS = "Credential access"
    DISCOVERY = "Discovery"
    LATERAL_MOVEMENT = "Lateral movement"
    COLLECTION = "Collection"
    COMMAND_AND_CONTROL = "Command and control"
    EXFILTRATION = "Exfiltration"
    IMPACT = "Impact"


# Sigma tag names (after "attack.") as SigmaHQ writes them.
_TACTIC_TAGS: dict[str, AttackTactic] = {
    "reconnaissance": AttackTactic.RECONNAISSANCE,
    "resource-development": AttackTactic.RESOURCE_DEVELOPMENT,
    "resource_development": AttackTactic.RESOURCE_DEVELOPMENT,
    "initial-access": AttackTactic.INITIAL_ACCESS,
    "initial_access": AttackTactic.INITIAL_ACCESS,
    "execution": AttackTactic.EXECUTION,
    "persistence": AttackTactic.PERSISTENCE,
    "privilege-escalation": AttackTactic.PRIVILEGE_ESCALATION,
    "privilege_escalation": AttackTactic.PRIVILEGE_ESCALATION,
    "defense-evasion": AttackTactic.DEFENSE_EVASION,
    "defense_evasion": AttackTactic.DEFENSE_EVASION,
    "defense-impairment": AttackTactic.DEFENSE_EVASION,
    "credential-access": AttackTactic.CREDENTIAL_ACCESS,
    "credential_access": AttackTactic.CREDENTIAL_ACCESS,
    "discovery": AttackTactic.DISCOVERY,
    "lateral-movement": AttackTactic.LATERAL_MOVEMENT,
    "lateral_movement": AttackTactic.LATERAL_MOVEMENT,
    "collection": AttackTactic.COLLECTION,
    "command-and-control": AttackTactic.COMMAND_AND_CONTROL,
    "command_and_control": AttackTactic.COMMAND_AND_CONTROL,
    "exfiltration": AttackTactic.EXFILTRATION,
    "impact": AttackTactic.IMPACT,
}

_TECHNIQUE = re.compile(r"t(\d{4})(?:\.(\d{3}))?", re.IGNORECASE)


def tactic_from_tag(tag: str) -> AttackTactic | None:
    """`attack.execution` -> Execution; None for tags that are not ATT&CK tactics."""
    namespace, _, name = tag.partition(".")
    if namespace.lower() != "attack":
        return None
    return _TACTIC_TAGS.get(name.lower())


def technique_from_tag(tag: str) -> str | None:
    """`attack.t1059.004` -> `T1059.004`; None for tags that are not ATT&CK techniques."""
    namespace, _, name = tag.partition(".")
    if namespace.lower() != "attack":
        return None
    m = _TECHNIQUE.fullmatch(name)
    if m is None:
        return None
    return f"T{m.group(1)}" + (f".{m.group(2)}" if m.group(2) else "")


def tactics_from_tags(tags: Iterable[str]) -> tuple[AttackTactic, ...]:
    """Distinct tactics named by the tags, in tag order."""
    found: dict[AttackTactic, None] = {}
    for tag in tags:
        tactic = tactic_from_tag(tag)
        if tactic is not None:
            found[tactic] = None
    return tuple(found)


def techniques_from_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """Distinct technique ids named by the tags, in tag order."""
    found: dict[str, None] = {}
    for tag in tags:
        technique = technique_from_tag(tag)
        if technique is not None:
            found[technique] = None
    return tuple(found)
