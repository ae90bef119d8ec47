"""From verdicts to remediations, from their outcomes to the investigation's state, and fleet expansion."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

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


# Persistence files that hold only what was put in them (removed whole); any other line file is shared by other
# entries (crontab, a profile, authorized_keys), so removing it whole waits for an analyst.
_DROP_IN = re.compile(r"^/etc/(cron\.d|cron\.(hourly|daily|weekly|monthly)|profile\.d)/[^/]+$|^/etc/ld\.so\.preload$")
_UNIT = re.compile(r"/systemd/(system|user)/([^/]+\.(service|timer))$")


def _persistence(e: Entity, quarantined: set[str], why: str) -> Remediation | None:
    """The remediation of one non-clean persistence entry, or None when the quarantine of a file its command names
    removes it already (the agent's quarantine takes out the entries that name the file)."""
    if not e.path:  # seen as the scheduler that started a process: the entry is the command it ran
        command = str(e.facts.get("commandLine") or "")
        if any(q in command for q in quarantined) or e.facts.get("mechanism") != "cron":
            return None
        words = command.split(" -c ", 1)
        match = words[1].strip().strip("'\"") if len(words) == 2 else command
        return Remediation(RemediationKind.REMOVE_PERSISTENCE, e.key, e.device_id, "/etc/cron.d", {"Match": match},
                           why) if match else None
    unit = _UNIT.search(e.path)
    if unit:
        return Remediation(RemediationKind.STOP_SERVICE, e.key, e.device_id, e.path, {"Unit": unit.group(2)}, why)
    return Remediation(RemediationKind.REMOVE_PERSISTENCE, e.key, e.device_id, e.path, {"Path": e.path}, why,
                       always_approve=not _DROP_IN.match(e.path))


def propose(entities: Sequence[Entity], verdicts: Mapping[str, EntityVerdict]) -> list[Remediation]:
    """Quarantine malicious and suspicious files (which also kills what runs them and removes the persistence
    that starts them, on the agent); kill malicious processes whose executable is not quarantined; remove
    non-clean persistence entries the quarantine does not (a unit is stopped and disabled instead); disable
    non-clean local accounts. Each persistence file removed on its own is one the quarantine is told to keep, so
    nothing is removed twice."""
    out: list[Remediation] = []
    bad = {k for k, v in verdicts.items() if v.verdict is not Verdict.CLEAN}
    quarantined = {e.path for e in entities if e.kind is EntityKind.FILE and e.key in bad and e.path}
    later: list[Remediation] = []
    for e in entities:
        if e.key not in bad:
            continue
        v = verdicts[e.key].verdict
        if e.kind is EntityKind.PROCESS and v is Verdict.MALICIOUS and e.path not in quarantined \
                and e.facts.get("pid"):
            later.append(Remediation(RemediationKind.KILL_PROCESS, e.key, e.device_id, e.path,
                                     {"ProcessId": int(e.facts["pid"]), "ProcessCreationTime": e.facts.get("created")},
                                     "malicious process"))
        elif e.kind is EntityKind.PERSISTENCE:
            r = _persistence(e, quarantined, f"{v} persistence entry")
            if r is not None:
                later.append(r)
        elif e.kind is EntityKind.USER and e.facts.get("account"):
            later.append(Remediation(RemediationKind.DISABLE_USER, e.key, e.device_id, "/etc/shadow",
                                     {"AccountName": e.facts["account"]}, f"{v} account"))
    kept = sorted({r.target_path for r in later if r.kind in (RemediationKind.REMOVE_PERSISTENCE,
                                                                RemediationKind.STOP_SERVICE) and "Match" not in
                   r.parameters})
    for e in entities:
        if e.kind is EntityKind.FILE and e.key in bad and e.path:
            params: dict[str, Any] = {"Path": e.path, **({"Sha256": e.sha256} if e.sha256 else {})}
            if kept:
                params["KeepPersistence"] = kept
            out.append(Remediation(RemediationKind.QUARANTINE_FILE, e.key, e.device_id, e.path, params,
                                   f"{verdicts[e.key].verdict} file"))
    return out + later


def decision(level: AutomationLevel, r: Remediation, verdict: Verdict) -> RemediationDecision:
    """The level's decision; a Suspicious entity's remediation always waits for an analyst, as in Defender, and so
    does one the proposal marks (a shared persistence file removed whole)."""
    d = decide(level, r.target_path)
    if (verdict is Verdict.SUSPICIOUS or r.always_approve) and d is RemediationDecision.RUN:
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
