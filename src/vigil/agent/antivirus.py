"""The antivirus on the agent: its definitions, its mode (block, audit, passive) and the real-time protection hook.

Modes, for real-time protection and what follows a detection:

- ``block``: an exec (and, with ``av_open_perm``, an open) of a file with a threat is denied, and the file is
  quarantined afterwards; a file just written with a threat is quarantined.
- ``audit``: every detection is reported (DeviceEvents ``AntivirusDetection``), nothing is denied or moved.
- ``passive``: as audit, for a device that keeps another antivirus: Vigil never blocks and never remediates,
  so the two products do not fight over files. ``auto`` (the default) is passive when an incumbent antivirus
  is seen (``agent.incumbent``), else block.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from vigil.agent.clock import Clock, iso
from vigil.agent.errors import AgentError, IdentityError
from vigil.agent.fanotify import Access, AccessKind, Decision
from vigil.agent.identity import load_identity
from vigil.agent.incumbent import Finding
from vigil.agent.sensors.base import EventSink
from vigil.agent.transport import AgentTransport
from vigil.av.bundle import BundleError, InstalledDefinitions, public_key_from_text
from vigil.av.definitions import Definitions, builtin
from vigil.av.engine import Engine
from vigil.av.exclusions import ExclusionError, ExclusionFile, Exclusions, merge
from vigil.av.history import ThreatHistory
from vigil.av.model import Detection
from vigil.av.policy import AvPolicy, PolicyError, parse_policy, reaction
from vigil.av.quarantine import QuarantineError, QuarantineStore
from vigil.wire.av import AvUpdateRequest

log = logging.getLogger(__name__)

LAST_SCANS_FILE = "last_scans.json"  # under <state>/av: when the last quick and full scans finished
EXCLUSIONS_FILE = "exclusions.json"  # under <state>/av: this endpoint's own exclusions (`vigil av exclusion`)
POLICY_FILE = "policy.json"  # under <state>/av: the device group's effective policy, as the server last sent it
HISTORY_FILE = "threats.jsonl"  # under <state>/av: every detection and what was done (`vigil av threat list`)
REPORT_AGAIN_SECONDS = 300.0  # one file's same threat is reported once per this, however often it is opened
# Products that are antiviruses (an EDR alone does not make Vigil passive).
ANTIVIRUS_PRODUCTS = frozenset({"ClamAV", "Microsoft Defender for Endpoint", "Sophos", "ESET",
                                "Trend Micro Deep Security", "Trellix (McAfee) Endpoint Security",
                                "Kaspersky Endpoint Security", "Bitdefender GravityZone", "BlackBerry Cylance"})


class Mode(StrEnum):
    BLOCK = "block"
    AUDIT = "audit"
    PASSIVE = "passive"


MODES = ("auto", *(m.value for m in Mode))


class DefinitionsRefused(AgentError):
    """The installed bundle cannot be trusted; the message says why."""


def load_definitions(state_dir: Path) -> Definitions:
    """The installed bundle, verified with the key this agent pinned at enrolment; else the built-in ones."""
    installed = InstalledDefinitions(state_dir / "av" / "definitions")
    if not installed.current.exists():
        return builtin()
    try:
        pinned = load_identity(state_dir).action_public_key
    except IdentityError as e:
        raise DefinitionsRefused(f"cannot verify the installed definitions: {e}") from None
    if not pinned:
        raise DefinitionsRefused("cannot verify the installed definitions: this agent pinned no signing key")
    try:
        loaded = installed.load([public_key_from_text(pinned)])
    except BundleError as e:
        raise DefinitionsRefused(f"the installed definitions are refused: {e}") from None
    return loaded or builtin()


def history(state_dir: Path) -> ThreatHistory:
    return ThreatHistory(state_dir / "av" / HISTORY_FILE)


def exclusion_file(state_dir: Path) -> Path:
    return state_dir / "av" / EXCLUSIONS_FILE


def local_exclusions(state_dir: Path) -> Exclusions:
    """What scans and real-time protection leave alone here: the endpoint's own exclusions and its group's."""
    return merge(ExclusionFile.load(exclusion_file(state_dir)).exclusions(), served_policy(state_dir).exclusions)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size


class ExclusionWatch:
    """``local_exclusions``, read again when either file changes (checked at most every ``every`` seconds), so
    `vigil av exclusion add` and a new group policy reach a running agent; a broken file keeps the last good lists."""

    def __init__(self, state_dir: Path, every: float = 2.0) -> None:
        self._state, self._every = state_dir, every
        self._files = (exclusion_file(state_dir), state_dir / "av" / POLICY_FILE)
        self._checked = -every
        self._stamps: tuple[tuple[int, int] | None, ...] | None = None
        self.current = Exclusions()

    def get(self) -> Exclusions:
        now = time.monotonic()
        if now - self._checked < self._every:
            return self.current
        self._checked = now
        stamps = tuple(_stamp(f) for f in self._files)
        if stamps != self._stamps:
            self._stamps = stamps
            try:
                self.current = local_exclusions(self._state)
            except ExclusionError as e:
                log.error("antivirus exclusions not updated: %s", e)
        return self.current


def resolve_mode(configured: str, incumbents: Sequence[Finding]) -> tuple[Mode, str]:
    """(mode, why) from the setting and the security products seen on the device."""
    if configured != "auto":
        return Mode(configured), f"av_mode = {configured}"
    products = sorted({f.product for f in incumbents if f.product in ANTIVIRUS_PRODUCTS})
    if products:
        return Mode.PASSIVE, f"another antivirus runs here ({', '.join(products)}): passive, to coexist"
    return Mode.BLOCK, "no other antivirus seen"


def record_scan(state_dir: Path, scan_type: str, finished: datetime) -> None:
    """Remember when the last quick or full scan finished (the protection state reports it)."""
    folder = state_dir / "av"
    folder.mkdir(parents=True, exist_ok=True)
    scans = last_scans(state_dir)
    scans[scan_type] = iso(finished)
    tmp = folder / f".{LAST_SCANS_FILE}.tmp"
    tmp.write_text(json.dumps(scans))
    os.replace(tmp, folder / LAST_SCANS_FILE)


def last_scans(state_dir: Path) -> dict[str, str]:
    try:
        raw = json.loads((state_dir / "av" / LAST_SCANS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(raw, dict) else {}


def sha256_of_fd(fd: int, limit: int = 1 << 30) -> str | None:
    """The file's SHA-256 read through ``fd`` with pread (its offset untouched); None past ``limit`` bytes."""
    h = hashlib.sha256()
    offset = 0
    while chunk := os.pread(fd, 1 << 20, offset):
        h.update(chunk)
        offset += len(chunk)
        if offset > limit:
            return None
    return h.hexdigest()


def sha256_of(path: str) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return sha256_of_fd(fd)
    finally:
        os.close(fd)


def detection_row(clock: Clock, d: Detection, *, source: str, action_taken: str, mode: Mode | None,
                  pid: int | None = None, sha256: str | None = None, extra: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    """One DeviceEvents ``AntivirusDetection`` row, the fields the server's antivirus alerts are made from."""
    fields: dict[str, Any] = {"ThreatName": d.threat.name, "ThreatType": str(d.threat.type),
                              "Severity": str(d.threat.severity), "DetectionSource": source,
                              "Signature": d.threat.signature, "Member": d.member, "ActionTaken": action_taken,
                              # hash, yara, heuristic or builtin: an investigation weighs a YARA match by name.
                              "SignatureSource": str(d.threat.source)}
    if mode is not None:
        fields["Mode"] = str(mode)
    row: dict[str, Any] = {"table": "DeviceEvents", "Timestamp": iso(clock.now()), "ActionType": "AntivirusDetection",
                           "FileName": os.path.basename(d.path), "FolderPath": d.path,
                           "AdditionalFields": fields | (extra or {})}
    if pid is not None:
        row["InitiatingProcessId"] = pid
    if sha256:
        row["SHA256"] = sha256
    return row


@dataclass
class ProtectionCounters:
    scanned: int = 0
    cached: int = 0
    detections: int = 0
    blocked: int = 0
    quarantined: int = 0
    removed: int = 0
    remediation_failures: int = 0


# Which of a file's detections decides what happens to it, and what is reported as done.
_STRENGTH = {"allow": 0, "audit": 1, "quarantine": 2, "remove": 3}
_TAKEN = {"quarantine": "Quarantined", "remove": "Removed", "audit": "None"}


class RealTimeHook:
    """The antivirus's decision hook for the on-access gate (``agent.fanotify``)."""

    name = "antivirus"
    kinds = frozenset({AccessKind.OPEN, AccessKind.EXEC, AccessKind.CLOSE_WRITE})

    def __init__(self, engine: Engine, mode: Mode, sink: EventSink, clock: Clock,
                 quarantine: QuarantineStore | None, threats: ThreatHistory | None = None,
                 exclusions: ExclusionWatch | None = None, policy: AvPolicy | None = None) -> None:
        self.engine, self.mode, self._sink, self._clock = engine, mode, sink, clock
        self._threats, self._exclusions = threats, exclusions
        self._policy = policy or AvPolicy()  # threat-type actions, PUA mode, allowed threats
        self._quarantine = quarantine if mode is Mode.BLOCK else None  # audit and passive never remediate
        self.counters = ProtectionCounters()
        self._lock = threading.Lock()
        self._reported: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._remediate: queue.Queue[tuple[str, Detection, str] | None] = queue.Queue()
        self._remediator: threading.Thread | None = None
        if self._quarantine is not None:
            self._remediator = threading.Thread(target=self._remediate_loop, name="vigil-rtp-quarantine",
                                                daemon=True)
            self._remediator.start()

    def _excluded(self, access: Access) -> bool:
        if self._exclusions is None:
            return False
        ex = self._exclusions.get()
        if not ex:
            return False
        if ex.file(access.path):
            return True
        if ex.process:
            try:
                return ex.by_process(os.readlink(f"/proc/{access.pid}/exe"))
            except OSError:
                return False
        return False

    def allows_quickly(self, fd: int) -> bool:
        """True when the file's clean verdict is cached (unchanged since scanned with these definitions)."""
        verdict = self.engine.cached(fd)
        return verdict is not None and verdict.clean

    def decide(self, access: Access) -> Decision:
        if self._excluded(access):
            return Decision.ALLOW
        verdict, _ = self.engine.scan_open(access.fd, access.path)
        with self._lock:
            self.counters.scanned += 1
            self.counters.cached += verdict.cached
        if verdict.clean:
            return Decision.ALLOW
        reactions = {d: reaction(self._policy, d.threat.name, str(d.threat.type)) for d in verdict.detections}
        found = tuple(d for d in verdict.detections if reactions[d] != "allow")  # allowed threats: not reported
        if not found:
            return Decision.ALLOW
        act = max((reactions[d] for d in found), key=_STRENGTH.__getitem__)
        first = next(d for d in found if reactions[d] == act)
        block = self.mode is Mode.BLOCK and act != "audit"
        deny = block and access.waits
        taken = ("Blocked" if deny else _TAKEN[act]) if block else "None"
        with self._lock:
            self.counters.detections += 1
            self.counters.blocked += deny
            report = self._first_report(access.path, first.threat.name)
        if report:
            digest = sha256_of_fd(access.fd)
            self._sink.append([detection_row(self._clock, d, source="Real-time protection", action_taken=taken,
                                             mode=self.mode, pid=access.pid, sha256=digest,
                                             extra={"Access": str(access.kind), "PolicyAction": reactions[d]})
                               for d in found])
            if self._threats is not None:
                self._threats.record(found, when=self._clock.now(), source="Real-time protection", action=taken)
        if self._quarantine is not None and block:
            self._remediate.put((access.path, first, act))  # after the answer: a denied exec must not wait for it
        return Decision.DENY if deny else Decision.ALLOW

    def _first_report(self, path: str, threat: str) -> bool:
        now = time.monotonic()
        key = (path, threat)
        at = self._reported.get(key)
        if at is not None and now - at < REPORT_AGAIN_SECONDS:
            return False
        self._reported[key] = now
        self._reported.move_to_end(key)
        while len(self._reported) > 10_000:
            self._reported.popitem(last=False)
        return True

    def _remediate_loop(self) -> None:
        assert self._quarantine is not None
        while (item := self._remediate.get()) is not None:
            path, detection, act = item
            if not os.path.lexists(path):
                continue  # already gone (quarantined after an earlier access, or deleted)
            if act == "remove":  # the policy says delete, not keep: nothing to restore
                try:
                    os.unlink(path)
                except OSError as e:
                    with self._lock:
                        self.counters.remediation_failures += 1
                    log.warning("real-time protection could not remove %s: %s", path, e)
                    continue
                with self._lock:
                    self.counters.removed += 1
                log.warning("real-time protection removed %s (%s)", path, detection.threat.name)
                continue
            try:
                entry = self._quarantine.add(Path(path), threat=detection.threat,
                                             extra={"source": "Real-time protection"})
            except (QuarantineError, OSError) as e:
                with self._lock:
                    self.counters.remediation_failures += 1
                log.warning("real-time protection could not quarantine %s: %s", path, e)
                continue
            with self._lock:
                self.counters.quarantined += 1
            log.warning("real-time protection quarantined %s (%s) as %s", path, detection.threat.name, entry.id)

    def close(self) -> None:
        if self._remediator is not None:
            self._remediate.put(None)
            self._remediator.join(5)
            self._remediator = None


# -- what the server says: the group's policy and its bundle ----------------------------------------------------


def served_policy(state_dir: Path) -> AvPolicy:
    """The policy the server last sent (empty before the first update); a damaged file counts as none, logged."""
    try:
        raw = json.loads((state_dir / "av" / POLICY_FILE).read_text())
        return parse_policy(raw, "policy")
    except FileNotFoundError:
        return AvPolicy()
    except (OSError, ValueError) as e:
        log.error("antivirus policy from the server unusable, ignored: %s", e)
        return AvPolicy()


def store_served_policy(state_dir: Path, raw: Any) -> AvPolicy:
    """Keep the group's effective policy the server sent (the update route or the signed protection bundle);
    a policy this agent cannot read is refused whole (PolicyError), the last good one stays."""
    policy = parse_policy(raw, "policy")
    folder = state_dir / "av"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{POLICY_FILE}.tmp"
    tmp.write_text(json.dumps(policy.as_dict()))
    os.replace(tmp, folder / POLICY_FILE)
    return policy


@dataclass(frozen=True)
class UpdateResult:
    policy: dict[str, Any]
    served_version: int | None
    installed_version: int
    installed_now: bool

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def update_from_server(state_dir: Path, transport: AgentTransport) -> UpdateResult:
    """Fetch the group's policy (kept in <state>/av/policy.json) and, when the server serves a newer bundle,
    download, verify and install it. Raises DefinitionsRefused for a bundle that does not verify or is older."""
    identity = load_identity(state_dir)
    if not identity.action_public_key:
        raise DefinitionsRefused("this agent pinned no signing key: it cannot verify definitions")
    trusted = [public_key_from_text(identity.action_public_key)]
    installed = InstalledDefinitions(state_dir / "av" / "definitions")
    try:
        header = installed.installed_header(trusted)
    except BundleError as e:
        log.warning("installed definitions refused, replacing them: %s", e)
        header = None
    current = int(str(header["version"])) if header else 0
    answer = transport.av_update(AvUpdateRequest(definitions_version=current))
    try:
        store_served_policy(state_dir, answer.policy)
    except PolicyError as e:
        log.error("antivirus policy from the server refused, the last one kept: %s", e)
    installed_now = False
    if answer.definitions_version is not None and answer.definitions_version > current:
        try:
            new = installed.install(transport.av_definitions(), trusted, "the server's bundle")
        except BundleError as e:
            raise DefinitionsRefused(str(e)) from None
        current, installed_now = int(str(new["version"])), True
    return UpdateResult(answer.policy, answer.definitions_version, current, installed_now)
