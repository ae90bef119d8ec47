"""The investigation's vocabulary: entities, their verdicts with reasons, remediations and Defender's states."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class EntityKind(StrEnum):
    PROCESS = "Process"
    FILE = "File"
    PERSISTENCE = "Persistence"
    IP = "Ip"
    DOMAIN = "Domain"
    USER = "User"


class Verdict(StrEnum):
    MALICIOUS = "Malicious"
    SUSPICIOUS = "Suspicious"
    CLEAN = "NoThreatsFound"


class InvestigationState(StrEnum):
    """Defender's investigation states (API values); ``label`` gives the portal's words."""

    RUNNING = "Running"
    PENDING_APPROVAL = "PendingApproval"
    REMEDIATED = "SuccessfullyRemediated"
    PARTIALLY_REMEDIATED = "PartiallyRemediated"
    NO_THREATS_FOUND = "NoThreatsFound"
    FAILED = "Failed"
    TERMINATED_BY_SYSTEM = "TerminatedBySystem"
    TERMINATED_BY_USER = "TerminatedByUser"
    BENIGN = "Benign"

    @property
    def label(self) -> str:
        return _LABELS[self]

    @property
    def finished(self) -> bool:
        return self not in (InvestigationState.RUNNING, InvestigationState.PENDING_APPROVAL)


_LABELS = {
    InvestigationState.RUNNING: "Running",
    InvestigationState.PENDING_APPROVAL: "Pending approval",
    InvestigationState.REMEDIATED: "Remediated",
    InvestigationState.PARTIALLY_REMEDIATED: "Partially remediated",
    InvestigationState.NO_THREATS_FOUND: "No threats found",
    InvestigationState.FAILED: "Failed",
    InvestigationState.TERMINATED_BY_SYSTEM: "Terminated by system",
    InvestigationState.TERMINATED_BY_USER: "Terminated by user",
    InvestigationState.BENIGN: "Benign",
}


@dataclass(frozen=True)
class Entity:
    """One thing the investigation found on a device; ``key`` identifies it within the investigation."""

    kind: EntityKind
    key: str
    device_id: str
    # The entity's own facts (path, sha256, pid, command line, peer, account...), shown as they are.
    facts: dict[str, Any] = field(default_factory=dict)
    # Keys of the entities this one came from (a process's parent, the process that wrote a file).
    parents: tuple[str, ...] = ()

    @property
    def path(self) -> str:
        return str(self.facts.get("path") or "")

    @property
    def sha256(self) -> str:
        return str(self.facts.get("sha256") or "").lower()


@dataclass(frozen=True)
class Reason:
    """Why an entity got its verdict: the source (Indicator, Antivirus, YARA, Sigma, Prevalence, Location) and words."""

    source: str
    weight: Verdict
    text: str


@dataclass(frozen=True)
class EntityVerdict:
    entity_key: str
    verdict: Verdict
    reasons: tuple[Reason, ...]


class RemediationKind(StrEnum):
    QUARANTINE_FILE = "QuarantineFile"
    KILL_PROCESS = "KillProcess"
    REMOVE_PERSISTENCE = "RemovePersistenceEntry"
    DISABLE_USER = "DisableLocalUser"
    STOP_SERVICE = "StopAndDisableService"


class RemediationDecision(StrEnum):
    """What the automation level made of one remediation."""

    RUN = "Run"
    NEEDS_APPROVAL = "PendingApproval"
    NOT_RUN = "NotRun"  # No automated response: recommended only


@dataclass(frozen=True)
class Remediation:
    kind: RemediationKind
    entity_key: str
    device_id: str
    # The folder the automation level judges (a file's path, a process's executable, an entry's file).
    target_path: str
    parameters: dict[str, Any]
    why: str
    # Waits for an analyst whatever the level lets run (the proposal cannot be narrower than it is).
    always_approve: bool = False
