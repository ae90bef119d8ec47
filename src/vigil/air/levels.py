"""Defender's five automation levels and Linux's core and temp folders: which remediation runs, which waits."""

from __future__ import annotations

import fnmatch
import posixpath
from enum import StrEnum

from vigil.air.model import RemediationDecision
from vigil.core.groups import AutomationLevel

# The level lives on the device group (``vigil.core.groups``, set through /api/machinegroups); these are its names
# in Defender's portal and the short names the CLI takes.
LABELS = {
    AutomationLevel.NONE: "No automated response",
    AutomationLevel.SEMI_ANY: "Semi - require approval for any remediation",
    AutomationLevel.SEMI_CORE_FOLDERS: "Semi - require approval for core folders remediation",
    AutomationLevel.SEMI_NON_TEMP_FOLDERS: "Semi - require approval for non-temp folders remediation",
    AutomationLevel.FULL: "Full - remediate threats automatically",
}
SHORT = {
    AutomationLevel.NONE: "none",
    AutomationLevel.SEMI_ANY: "semi-any",
    AutomationLevel.SEMI_CORE_FOLDERS: "semi-core",
    AutomationLevel.SEMI_NON_TEMP_FOLDERS: "semi-non-temp",
    AutomationLevel.FULL: "full",
}


def parse_level(text: str) -> AutomationLevel:
    """A level from its API value (FullRemediation...), its portal name (either dash) or its short name; a
    ValueError listing them otherwise."""
    wanted = " ".join(text.replace("–", "-").replace("—", "-").split()).lower()
    for level in AutomationLevel:
        if wanted in (level.value.lower(), LABELS[level].lower(), SHORT[level]):
            return level
    names = ", ".join(f"{SHORT[x]} ({x.value}: {LABELS[x]!r})" for x in AutomationLevel)
    raise ValueError(f"automation level {text!r} is not one of: {names}")


# Defender's "core folders" and "temp folders", read for Linux as the issue names them.
CORE_FOLDERS = ("/usr", "/bin", "/sbin", "/lib*", "/etc", "/boot")
TEMP_FOLDERS = ("/tmp", "/var/tmp", "/dev/shm", "/home/*/Downloads", "/root/Downloads")  # noqa: S108 - names, not use


class FolderClass(StrEnum):
    CORE = "core"
    TEMP = "temp"
    OTHER = "other"


def _under(path: str, pattern: str) -> bool:
    parts, want = path.split("/"), pattern.split("/")
    return len(parts) > len(want) and all(fnmatch.fnmatchcase(p, w) for p, w in zip(parts, want, strict=False))


def classify_folder(path: str) -> FolderClass:
    """Core, temp or other for an absolute path; a path that is not absolute counts as core (the cautious side)."""
    if not path.startswith("/"):
        return FolderClass.CORE
    clean = posixpath.normpath(path)
    if any(_under(clean, p) for p in CORE_FOLDERS):
        return FolderClass.CORE
    if any(_under(clean, p) for p in TEMP_FOLDERS):
        return FolderClass.TEMP
    return FolderClass.OTHER


def decide(level: AutomationLevel, target_path: str) -> RemediationDecision:
    """Whether a remediation on ``target_path`` runs by itself, waits for approval, or is only recommended."""
    if level is AutomationLevel.NONE:
        return RemediationDecision.NOT_RUN
    if level is AutomationLevel.FULL:
        return RemediationDecision.RUN
    if level is AutomationLevel.SEMI_ANY:
        return RemediationDecision.NEEDS_APPROVAL
    where = classify_folder(target_path)
    if level is AutomationLevel.SEMI_CORE_FOLDERS:
        return RemediationDecision.NEEDS_APPROVAL if where is FolderClass.CORE else RemediationDecision.RUN
    return RemediationDecision.RUN if where is FolderClass.TEMP else RemediationDecision.NEEDS_APPROVAL
