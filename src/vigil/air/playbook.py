"""Playbooks as registered, typed steps: each step reads the evidence source and adds entities to the findings."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from vigil.air.evidence import EvidenceSource, Findings, Row, Seed, as_text, file_key, process_key
from vigil.air.levels import FolderClass, classify_folder
from vigil.air.model import Entity, EntityKind
from vigil.core.registry import Registry


class DuplicateStep(ValueError):
    pass


class UnknownStep(LookupError):
    pass


class Step(Protocol):
    name: ClassVar[str]

    def run(self, source: EvidenceSource, findings: Findings) -> None: ...


STEPS: Registry[type[Step]] = Registry("playbook step", duplicate=DuplicateStep, unknown=UnknownStep)

# Files whose lines or contents start programs by themselves (the agent's persistence list, as path patterns).
PERSISTENCE_PATHS = (
    r"/etc/crontab", r"/etc/cron\.[^/]+/.+", r"/var/spool/cron/.+", r"/etc/systemd/system/.+\.(service|timer)",
    r"/(usr/)?lib/systemd/system/.+\.(service|timer)", r"/etc/systemd/user/.+\.service",
    r"/(root|home/[^/]+)/\.config/systemd/user/.+\.service", r"/(root|home/[^/]+)/\.ssh/authorized_keys2?",
    r"/(root|home/[^/]+)/\.(bashrc|profile|bash_profile|zshrc)", r"/etc/(profile|bash\.bashrc|environment|rc\.local)",
    r"/etc/profile\.d/.+", r"/etc/ld\.so\.preload",
)
_PERSISTENCE = re.compile("^(?:" + "|".join(PERSISTENCE_PATHS) + ")$")
_CRON_PARENTS = frozenset({"cron", "crond", "anacron", "atd"})
_SYSTEMD_PARENTS = frozenset({"systemd"})


def is_persistence_path(path: str) -> bool:
    return bool(_PERSISTENCE.match(path))


_INTERPRETERS = re.compile(r"^(sh|bash|dash|zsh|ksh|busybox|python[0-9.]*|perl|ruby|php[0-9.]*|node|lua[0-9.]*)$")


def _scripts(command_line: str) -> list[str]:
    """The script an interpreter runs (``sh /tmp/x.sh``): its first operand, when that is an absolute path
    outside the core folders; nothing for ``-c`` code or any other program's arguments."""
    try:
        words = shlex.split(command_line)
    except ValueError:
        words = command_line.split()
    if not words or not _INTERPRETERS.match(words[0].rsplit("/", 1)[-1]) or "-c" in words:
        return []
    operand = next((w for w in words[1:] if not w.startswith("-")), "")
    return [operand] if operand.startswith("/") and classify_folder(operand) is not FolderClass.CORE else []


def _process(device_id: str, row: Row, parents: tuple[str, ...] = ()) -> Entity:
    return Entity(EntityKind.PROCESS, process_key(device_id, row.get("ProcessId"), row.get("ProcessCreationTime")),
                  device_id, {
                      "pid": row.get("ProcessId"), "created": as_text(row.get("ProcessCreationTime")),
                      "path": row.get("FolderPath") or "", "sha256": row.get("SHA256") or "",
                      "commandLine": row.get("ProcessCommandLine") or "", "account": row.get("AccountName") or "",
                      "parentPid": row.get("InitiatingProcessId"),
                      "parentName": row.get("InitiatingProcessFileName") or "",
                  }, parents)


@STEPS.add("ProcessTree")
class ProcessTree:
    """The alert's processes, their ancestors and their descendants within the window."""

    name: ClassVar[str] = "ProcessTree"

    def run(self, source: EvidenceSource, findings: Findings) -> None:
        seed = findings.seed
        rows = [r for r in source.rows("DeviceProcessEvents", seed.device_id, seed.start, seed.end)
                if r.get("ActionType") == "ProcessCreated" and r.get("ProcessId")]
        by_pid: dict[int, Row] = {int(r["ProcessId"]): r for r in rows}
        seeds = {int(r["ProcessId"]) for r in seed.alert_rows if r.get("ProcessId")}
        if not seed.alert_rows:  # a device investigated by hand: what ran from a temp folder
            seeds = {pid for pid, r in by_pid.items() if _from_temp(r)}
        tree: set[int] = set()
        for pid in seeds:
            cur: int | None = pid
            while cur is not None and cur not in tree and cur in by_pid:  # ancestors
                tree.add(cur)
                cur = by_pid[cur].get("InitiatingProcessId")
        changed = True
        while changed:  # descendants
            grown = {pid for pid, r in by_pid.items() if r.get("InitiatingProcessId") in tree} - tree
            changed = bool(grown)
            tree |= grown
        for pid in sorted(tree):
            r = by_pid[pid]
            parent = by_pid.get(int(r.get("InitiatingProcessId") or 0))
            parents = (process_key(seed.device_id, parent["ProcessId"], parent.get("ProcessCreationTime")),) \
                if parent is not None else ()
            findings.add(_process(seed.device_id, r, parents))
        # An alert row whose process the window does not hold still counts: it is what the alert saw.
        for r in seed.alert_rows:
            if r.get("ProcessId") and int(r["ProcessId"]) not in tree:
                findings.add(_process(seed.device_id, r))
                tree.add(int(r["ProcessId"]))
        findings.tree_pids |= tree
        findings.log.append(f"ProcessTree: {len(tree)} processes around {len(seeds)} seed(s)")


def _from_temp(r: Row) -> bool:
    return classify_folder(str(r.get("FolderPath") or "")) is FolderClass.TEMP or any(
        classify_folder(s) is FolderClass.TEMP for s in _scripts(str(r.get("ProcessCommandLine") or "")))


@STEPS.add("Files")
class Files:
    """The tree's executables and the scripts they ran, and the files its processes wrote, with hashes."""

    name: ClassVar[str] = "Files"

    def run(self, source: EvidenceSource, findings: Findings) -> None:
        seed = findings.seed
        written = source.rows("DeviceFileEvents", seed.device_id, seed.start, seed.end)
        hashes = {str(r.get("FolderPath")): str(r.get("SHA256") or "") for r in written if r.get("SHA256")}
        n = 0
        for p in findings.of_kind(EntityKind.PROCESS):
            if p.path:
                facts = {"path": p.path, "sha256": p.sha256 or hashes.get(p.path, ""), "role": "executable"}
                findings.add(Entity(EntityKind.FILE, file_key(seed.device_id, p.path), seed.device_id, facts, (p.key,)))
                n += 1
            for script in _scripts(str(p.facts.get("commandLine") or "")):
                findings.add(Entity(EntityKind.FILE, file_key(seed.device_id, script), seed.device_id,
                                    {"path": script, "sha256": hashes.get(script, ""), "role": "script"}, (p.key,)))
                n += 1
        for r in written:
            path = str(r.get("FolderPath") or "")
            if path and r.get("InitiatingProcessId") in findings.tree_pids:
                parent = process_key(seed.device_id, r.get("InitiatingProcessId"),
                                     r.get("InitiatingProcessCreationTime"))
                findings.add(Entity(EntityKind.FILE, file_key(seed.device_id, path), seed.device_id,
                                    {"path": path, "sha256": str(r.get("SHA256") or ""), "role": "written",
                                     "action": r.get("ActionType")},
                                    (parent,) if parent in findings.entities else ()))
                n += 1
        findings.log.append(f"Files: {n} file sightings")


@STEPS.add("Persistence")
class Persistence:
    """Persistence entries: files in cron, systemd, authorized_keys, shell profile and ld.so.preload places that
    changed in the window, and the scheduler a tree process was started by."""

    name: ClassVar[str] = "Persistence"

    def run(self, source: EvidenceSource, findings: Findings) -> None:
        seed = findings.seed
        n = 0
        for r in source.rows("DeviceFileEvents", seed.device_id, seed.start, seed.end):
            path = str(r.get("FolderPath") or "")
            if is_persistence_path(path) and r.get("ActionType") != "FileDeleted":
                findings.add(Entity(EntityKind.PERSISTENCE, f"persistence:{seed.device_id}:{path}", seed.device_id,
                                    {"path": path, "mechanism": _mechanism(path), "action": r.get("ActionType"),
                                     "writer": r.get("InitiatingProcessFolderPath") or ""}))
                n += 1
        for p in findings.of_kind(EntityKind.PROCESS):
            parent = str(p.facts.get("parentName") or "").lower()
            # systemd starts every daemon: only a unit running something outside the core folders is of note.
            outside = classify_folder(p.path) is not FolderClass.CORE or _scripts(str(p.facts.get("commandLine")))
            if parent in _CRON_PARENTS or (parent in _SYSTEMD_PARENTS and outside):
                mech = "cron" if parent in _CRON_PARENTS else "systemd"
                findings.add(Entity(EntityKind.PERSISTENCE, f"persistence:{seed.device_id}:{mech}:{p.key}",
                                    seed.device_id, {"path": "", "mechanism": mech, "starts": p.key,
                                                     "commandLine": p.facts.get("commandLine", "")}, (p.key,)))
                n += 1
        findings.log.append(f"Persistence: {n} entries")


def _mechanism(path: str) -> str:
    for word in ("cron", "systemd", "authorized_keys", "ld.so.preload"):
        if word in path:
            return word
    return "shell profile"


@STEPS.add("NetworkPeers")
class NetworkPeers:
    """Addresses and host names the tree's processes talked to."""

    name: ClassVar[str] = "NetworkPeers"

    def run(self, source: EvidenceSource, findings: Findings) -> None:
        seed = findings.seed
        n = 0
        for r in source.rows("DeviceNetworkEvents", seed.device_id, seed.start, seed.end):
            if r.get("InitiatingProcessId") not in findings.tree_pids or not r.get("RemoteIP"):
                continue
            parent = process_key(seed.device_id, r.get("InitiatingProcessId"), r.get("InitiatingProcessCreationTime"))
            parents = (parent,) if parent in findings.entities else ()
            ip = str(r["RemoteIP"])
            findings.add(Entity(EntityKind.IP, f"ip:{ip}", seed.device_id,
                                {"ip": ip, "port": r.get("RemotePort"), "protocol": r.get("Protocol") or ""}, parents))
            if r.get("RemoteUrl"):
                host = str(r["RemoteUrl"]).lower()
                findings.add(Entity(EntityKind.DOMAIN, f"domain:{host}", seed.device_id, {"domain": host}, parents))
            n += 1
        findings.log.append(f"NetworkPeers: {n} connections")


@STEPS.add("LoggedOnUsers")
class LoggedOnUsers:
    """The accounts the tree ran as and those that signed in during the window."""

    name: ClassVar[str] = "LoggedOnUsers"

    def run(self, source: EvidenceSource, findings: Findings) -> None:
        seed = findings.seed
        names: dict[str, dict[str, Any]] = {}
        for p in findings.of_kind(EntityKind.PROCESS):
            if p.facts.get("account"):
                names.setdefault(str(p.facts["account"]), {"account": p.facts["account"], "logons": 0})
        for r in source.rows("DeviceLogonEvents", seed.device_id, seed.start, seed.end):
            if r.get("ActionType") == "LogonSuccess" and r.get("AccountName"):
                info = names.setdefault(str(r["AccountName"]), {"account": r["AccountName"], "logons": 0})
                info["logons"] += 1
                info["lastRemoteIP"] = r.get("RemoteIP") or info.get("lastRemoteIP", "")
        for name, info in names.items():
            findings.add(Entity(EntityKind.USER, f"user:{seed.device_id}:{name}", seed.device_id, info))
        findings.log.append(f"LoggedOnUsers: {len(names)} accounts")


DEFAULT_PLAYBOOK = ("ProcessTree", "Files", "Persistence", "NetworkPeers", "LoggedOnUsers")


@dataclass(frozen=True)
class Gathered:
    entities: tuple[Entity, ...]
    log: tuple[str, ...]


def gather(source: EvidenceSource, seed: Seed, steps: Iterable[str] = DEFAULT_PLAYBOOK) -> Gathered:
    """Run the named steps in order (an unknown name raises before any runs)."""
    names = list(steps)
    STEPS.check_known(names)
    findings = Findings(seed)
    for name in names:
        STEPS.get(name)().run(source, findings)
    return Gathered(tuple(findings.entities.values()), tuple(findings.log))
