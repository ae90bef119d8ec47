"""The protection bundle on the on-access gate (vigil.agent.fanotify): file-hash indicators and the ASR rules that
can be decided before an exec, denied before the program runs.

Only ``FAN_OPEN_EXEC_PERM`` is asked for: ``sh file`` and ``ld.so file`` are plain opens and get past it (the
telemetry path still sees them and terminates, see agent.protection). Pre-exec the new command line is not known
yet, so only rules decided by the executable's path and the executing process (the parent's image: a fork keeps
it until the exec) run here: PRE_EXEC_RULES. Hashes are cached per (device, inode, mtime, size).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from vigil.agent.clock import iso
from vigil.agent.fanotify import Access, AccessKind, Decision
from vigil.asr import AsrMode, catalogue, evaluate
from vigil.asr.indicators import IndicatorAction, IndicatorType, Observation

if TYPE_CHECKING:
    from vigil.agent.protection import Protection

log = logging.getLogger(__name__)

PRE_EXEC_RULES = frozenset({"ExecFromTempOrRemovable", "OfficePdfChildShell", "BrowserChildShell",
                            "ServerChildShell"})
FILE_TYPES = frozenset({IndicatorType.FILE_SHA1, IndicatorType.FILE_SHA256, IndicatorType.FILE_MD5})
_BLOCKING = (IndicatorAction.BLOCK, IndicatorAction.BLOCK_AND_REMEDIATE, IndicatorAction.WARN)
_CHUNK = 1 << 20
_CACHE = 4096


def _exe_of(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


class ProtectionHook:
    """A DecisionHook: allow unless a file indicator blocks the executable or a pre-exec ASR rule in Block/Warn
    matches; Allowed hashes win over everything."""

    name = "protection"
    kinds = frozenset({AccessKind.EXEC})

    def __init__(self, protection: Protection) -> None:
        self._p = protection
        self._rules = [r for r in catalogue() if r.name in PRE_EXEC_RULES]
        self._hashes: OrderedDict[tuple[object, ...], dict[str, str]] = OrderedDict()

    def _digest(self, fd: int, kinds: frozenset[IndicatorType]) -> dict[str, str]:
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size, kinds)  # kinds: which digests it holds
        cached = self._hashes.get(key)
        if cached is not None:
            self._hashes.move_to_end(key)
            return cached
        algos = {"sha256": hashlib.sha256(), "sha1": hashlib.sha1(), "md5": hashlib.md5()}  # noqa: S324 - matching
        wanted = {n: h for n, h in algos.items() if IndicatorType(f"File{n.title()}") in kinds}
        offset = 0
        while chunk := os.pread(fd, _CHUNK, offset):
            for h in wanted.values():
                h.update(chunk)
            offset += len(chunk)
        out = {n: h.hexdigest() for n, h in wanted.items()}
        self._hashes[key] = out
        if len(self._hashes) > _CACHE:
            self._hashes.popitem(last=False)
        return out

    def decide(self, access: Access) -> Decision:
        p = self._p
        bundle, matcher, kinds = p.bundle, p.matcher, p.file_kinds
        if bundle is None:
            return Decision.ALLOW
        parent = _exe_of(access.pid)
        base: dict[str, Any] = {"table": "DeviceEvents", "FileName": access.path.rsplit("/", 1)[-1],
                                "FolderPath": access.path, "ProcessId": access.pid,
                                "InitiatingProcessFileName": parent.rsplit("/", 1)[-1],
                                "InitiatingProcessFolderPath": parent}
        if kinds and matcher is not None:
            digest = self._digest(access.fd, kinds)
            verdict = matcher.verdict(Observation(sha256=digest.get("sha256", ""), sha1=digest.get("sha1", ""),
                                                  md5=digest.get("md5", "")), p.clock.now(), None)
            if verdict is not None:
                if verdict.action is IndicatorAction.ALLOWED:
                    return Decision.ALLOW
                ind = verdict.indicator
                blocked = verdict.action in _BLOCKING
                p.sink.append([{**base, "Timestamp": iso(p.clock.now()), "SHA256": digest.get("sha256"),
                                "ActionType": "FileIndicator" + ("Blocked" if blocked else "Audited"),
                                "AdditionalFields": {"IndicatorId": ind.id, "IndicatorTitle": ind.title,
                                                     "IndicatorType": ind.indicator_type.value,
                                                     "IndicatorValue": ind.indicator_value,
                                                     "Action": verdict.action.value}}])
                if blocked:
                    return Decision.DENY
        row = {"ActionType": "ProcessCreated", "FileName": base["FileName"], "FolderPath": access.path,
               "InitiatingProcessFileName": base["InitiatingProcessFileName"], "InitiatingProcessFolderPath": parent}
        for d in evaluate(self._rules, bundle.policies, bundle.group_id, "DeviceProcessEvents", row):
            if d.mode is AsrMode.WARN and p.override_for(d.rule.guid, row) is not None:
                continue  # let through; the telemetry path records it as Audited, naming the override
            if d.mode in (AsrMode.BLOCK, AsrMode.WARN):  # Audit is recorded by the telemetry path, once
                p.sink.append([{**base, "Timestamp": iso(p.clock.now()), "ActionType": d.action_type,
                                "AdditionalFields": {"RuleId": d.rule.guid, "RuleName": d.rule.name,
                                                     "Mode": d.mode.name.title(),
                                                     "Detail": "the exec was denied before it ran"}}])
                return Decision.DENY
        return Decision.ALLOW

    def needed(self) -> bool:
        """Whether the gate has anything to decide: file indicators, or a pre-exec rule in Block or Warn."""
        bundle = self._p.bundle
        if bundle is None:
            return False
        if self._p.file_kinds:
            return True
        return any(bundle.policies.mode(r.guid, bundle.group_id) in (AsrMode.BLOCK, AsrMode.WARN)
                   for r in self._rules)
