"""From verdicts to remediations, from their outcomes to the investigation's state, and fleet expansion."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from vigil.air.levels import decide
from vigil.air.model import (
    Entity,
    EntityKind,
    EntityVerdict,
    InvestigationState,
    Remediation,
    RemediationDecision,
    RemediationKind,
    Verdict,
)
from vigil.core.groups import AutomationLevel

# As in Defender: an investigation reaches further devices by itself, unless that is this many or more.
EXPANSION_APPROVAL_DEVICES = 10


def propose(entities: Sequence[Entity], verdicts: Mapping[str, EntityVerdict]) -> list[Remediation]:
    """Quarantine malicious and suspicious files (which also kills what runs them and removes the persistence
    that starts them, on the agent); kill malicious processes whose executable is not quarantined; remove
    malicious persistence entries; stop malicious systemd units; disable malicious local users."""
    out: list[Remediation] = []
    bad = {k for k, v in verdicts.items() if v.verdict is not Verdict.CLEAN}
    quarantined: set[str] = set()
    for e in entities:
        if e.kind is EntityKind.FILE and e.key in bad and e.path:
            params = {"Path": e.path, **({"Sha256": e.sha256} if e.sha256 else {})}
            out.append(Remediation(RemediationKind.QUARANTINE_FILE, e.key, e.device_id, e.path, params,
                                   f"{verdicts[e.key].verdict} file"))
            quarantined.add(e.path)
    for e in entities:
        if e.key not in bad or verdicts[e.key].verdict is not Verdict.MALICIOUS:
            continue
        if e.kind is EntityKind.PROCESS and e.path not in quarantined and e.facts.get("pid"):
            out.append(Remediation(RemediationKind.KILL_PROCESS, e.key, e.device_id, e.path,
                                   {"ProcessId": int(e.facts["pid"]), "ProcessCreationTime": e.facts.get("created")},
                                   "malicious process"))
        elif e.kind is EntityKind.PERSISTENCE and e.path:
            kind = RemediationKind.STOP_SERVICE if e.facts.get("mechanism") == "systemd" \
                else RemediationKind.REMOVE_PERSISTENCE
            out.append(Remediation(kind, e.key, e.device_id, e.path, {"Path": e.path}, "malicious persistence entry"))
        elif e.kind is EntityKind.USER:
            out.append(Remediation(RemediationKind.DISABLE_USER, e.key, e.device_id, "/etc/passwd",
                                   {"AccountName": e.facts.get("account")}, "malicious account"))
    return out


def decision(level: AutomationLevel, r: Remediation, verdict: Verdict) -> RemediationDecision:
    """The level's decision; a Suspicious entity's remediation always waits for an analyst, as in Defender."""
    d = decide(level, r.target_path)
    if verdict is Verdict.SUSPICIOUS and d is RemediationDecision.RUN:
        return RemediationDecision.NEEDS_APPROVAL
    return d


class Outcome(StrEnum):
    """Where one remediation stands, from its machine action (or the lack of one)."""

    NOT_RUN = "NotRun"
    UNSUPPORTED = "Unsupported"  # the agent has no action for it yet
    PENDING_APPROVAL = "PendingApproval"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    REJECTED = "Rejected"
    UNDONE = "Undone"


def state_of(verdicts: Iterable[EntityVerdict], outcomes: Sequence[Outcome]) -> InvestigationState:
    """Defender's state from the verdicts and the remediations' outcomes."""
    found = [v for v in verdicts if v.verdict is not Verdict.CLEAN]
    if not found:
        return InvestigationState.NO_THREATS_FOUND
    acted = [o for o in outcomes if o not in (Outcome.NOT_RUN, Outcome.UNSUPPORTED)]
    if Outcome.RUNNING in acted:
        return InvestigationState.RUNNING
    if Outcome.PENDING_APPROVAL in acted:
        return InvestigationState.PENDING_APPROVAL
    if not acted:
        # Threats and nothing done: No automated response, or remediations the agent cannot run yet.
        return InvestigationState.TERMINATED_BY_SYSTEM
    done = [o for o in acted if o in (Outcome.SUCCEEDED, Outcome.UNDONE)]
    if len(done) == len(outcomes):
        return InvestigationState.REMEDIATED
    if done:
        return InvestigationState.PARTIALLY_REMEDIATED
    return InvestigationState.FAILED if Outcome.FAILED in acted else InvestigationState.PARTIALLY_REMEDIATED


@dataclass(frozen=True)
class Expansion:
    """Other devices where the investigation's file hashes, addresses or domains are seen."""

    device_ids: tuple[str, ...]
    needs_approval: bool
    # For each device, the entities (kind:value) seen there.
    why: Mapping[str, tuple[str, ...]]


def expansion(origin: str, sightings: Mapping[str, Iterable[str]]) -> Expansion:
    """``sightings`` maps an entity (``sha256:...``, ``ip:...``, ``domain:...``) to the devices seeing it."""
    why: dict[str, list[str]] = {}
    for entity, devices in sightings.items():
        for d in devices:
            if d != origin:
                why.setdefault(d, []).append(entity)
    ids = tuple(sorted(why))
    return Expansion(ids, len(ids) >= EXPANSION_APPROVAL_DEVICES, {d: tuple(sorted(v)) for d, v in why.items()})
