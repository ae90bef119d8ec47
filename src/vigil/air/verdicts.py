"""Verdicts per entity from indicators, antivirus and YARA results, Sigma hits, prevalence and location.

Rules, in order: an Allowed indicator makes the entity clean whatever else says (as Defender's allow wins); a
Block or BlockAndRemediate indicator, an antivirus detection or a YARA match makes it Malicious; otherwise each
weaker signal (a Warn or Audit indicator, a Sigma hit, a binary rare in the fleet, an executable run from a temp
folder, a file a persistence entry starts) is Suspicious, and two independent ones together are Malicious. A temp
folder alone is only context: plenty of honest programs run from /tmp, so it never makes a verdict by itself.
Every verdict carries the reasons that made it. Persistence entries and accounts are judged after, by what they
touch (``judge_related``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from vigil.air.levels import FolderClass, classify_folder
from vigil.air.model import Entity, EntityKind, EntityVerdict, Reason, Verdict

# A binary seen on at most this share of a fleet of at least RARE_MIN_FLEET devices is rare.
RARE_MIN_FLEET = 5
RARE_SHARE = 0.05


@dataclass(frozen=True)
class Signals:
    """What the sources say of one entity; the service looks them up, the engine weighs them."""

    indicator_action: str | None = None  # Allowed, Audit, Warn, Block, BlockAndRemediate
    indicator_title: str = ""
    antivirus: tuple[str, ...] = ()  # threat names
    yara: tuple[str, ...] = ()  # rule names
    sigma: tuple[str, ...] = ()  # alert titles whose evidence names the entity
    devices_seen: int = 0  # devices whose telemetry shows the same hash (files and processes)
    fleet_size: int = 0
    started_by_persistence: tuple[str, ...] = ()  # entries (file: line) that start it


def _reasons(entity: Entity, s: Signals) -> list[Reason]:
    out: list[Reason] = []
    if s.indicator_action in ("Block", "BlockAndRemediate"):
        out.append(Reason("Indicator", Verdict.MALICIOUS, f"{s.indicator_action} indicator '{s.indicator_title}'"))
    elif s.indicator_action in ("Warn", "Audit"):
        out.append(Reason("Indicator", Verdict.SUSPICIOUS, f"{s.indicator_action} indicator '{s.indicator_title}'"))
    out += [Reason("Antivirus", Verdict.MALICIOUS, f"antivirus detection {name}") for name in s.antivirus]
    out += [Reason("YARA", Verdict.MALICIOUS, f"YARA rule {name} matched") for name in s.yara]
    if s.sigma:
        out.append(Reason("Sigma", Verdict.SUSPICIOUS, "Sigma alert: " + "; ".join(sorted(set(s.sigma)))))
    if (entity.kind in (EntityKind.FILE, EntityKind.PROCESS) and entity.sha256 and s.fleet_size >= RARE_MIN_FLEET
            and 0 < s.devices_seen <= max(1, int(s.fleet_size * RARE_SHARE))):
        out.append(Reason("Prevalence", Verdict.SUSPICIOUS,
                          f"seen on {s.devices_seen} of {s.fleet_size} devices: rare in the fleet"))
    if entity.kind in (EntityKind.FILE, EntityKind.PROCESS) and entity.path \
            and classify_folder(entity.path) is FolderClass.TEMP:
        out.append(Reason("Location", Verdict.SUSPICIOUS, f"runs from a temp folder ({entity.path})"))
    if s.started_by_persistence:
        out.append(Reason("Persistence", Verdict.SUSPICIOUS,
                          "started by " + "; ".join(sorted(set(s.started_by_persistence)))))
    return out


def judge(entity: Entity, s: Signals) -> EntityVerdict:
    """The entity's verdict and every reason behind it."""
    if s.indicator_action == "Allowed":
        why = Reason("Indicator", Verdict.CLEAN, f"Allowed indicator '{s.indicator_title}' (allow wins)")
        return EntityVerdict(entity.key, Verdict.CLEAN, (why,))
    reasons = _reasons(entity, s)
    if any(r.weight is Verdict.MALICIOUS for r in reasons):
        verdict = Verdict.MALICIOUS
    elif len({r.source for r in reasons}) >= 2:
        verdict = Verdict.MALICIOUS
        reasons.append(Reason("Combined", Verdict.MALICIOUS, "two independent suspicious signals"))
    elif reasons and {r.source for r in reasons} != {"Location"}:
        verdict = Verdict.SUSPICIOUS
    else:
        verdict = Verdict.CLEAN
    return EntityVerdict(entity.key, verdict, tuple(reasons))


_RANK = {Verdict.CLEAN: 0, Verdict.SUSPICIOUS: 1, Verdict.MALICIOUS: 2}


def judge_related(entities: Iterable[Entity], verdicts: Mapping[str, EntityVerdict]) -> dict[str, EntityVerdict]:
    """The verdicts with persistence entries and accounts judged by what they touch: an entry that starts a
    non-clean process, or that a non-clean program wrote, takes that verdict; an account that signed in from a
    non-clean address is Suspicious at most (disabling an account always waits for an analyst)."""
    listed = list(entities)
    by_key = {e.key: e for e in listed}
    by_path: dict[str, Verdict] = {}
    for e in listed:
        v = verdicts[e.key].verdict
        if e.kind in (EntityKind.FILE, EntityKind.PROCESS) and e.path and _RANK[v] > _RANK[by_path.get(e.path,
                                                                                                        Verdict.CLEAN)]:
            by_path[e.path] = v
    out = dict(verdicts)
    for e in listed:
        reasons: list[Reason] = []
        if e.kind is EntityKind.PERSISTENCE:
            starts = str(e.facts.get("starts") or "")
            if starts in verdicts and verdicts[starts].verdict is not Verdict.CLEAN:
                v, what = verdicts[starts].verdict, by_key[starts].path or starts
                reasons.append(Reason("Persistence", v, f"starts {what}, which is {v}"))
            writer = str(e.facts.get("writer") or "")
            if by_path.get(writer, Verdict.CLEAN) is not Verdict.CLEAN:
                reasons.append(Reason("Persistence", by_path[writer], f"written by {writer}, which is "
                                                                       f"{by_path[writer]}"))
        elif e.kind is EntityKind.USER:
            ip = str(e.facts.get("lastRemoteIP") or "")
            peer = verdicts.get(f"ip:{ip}")
            if peer is not None and peer.verdict is not Verdict.CLEAN:
                reasons.append(Reason("Logon", Verdict.SUSPICIOUS, f"signed in from {ip}, which is {peer.verdict}"))
        if reasons and verdicts[e.key].verdict is Verdict.CLEAN:
            worst = max((r.weight for r in reasons), key=_RANK.__getitem__)
            out[e.key] = EntityVerdict(e.key, worst, verdicts[e.key].reasons + tuple(reasons))
    return out
