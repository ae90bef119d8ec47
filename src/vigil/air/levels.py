"""Defender's five automation levels and Linux's core and temp folders: which remediation runs, which waits."""

from __future__ import annotations

import fnmatch
import posixpath
from enum import StrEnum

from vigil.air.model import RemediationDecision


class AutomationLevel(StrEnum):
    """A device group's remediation level, with Defender's names as values."""

    NONE = "No automated response"
    SEMI_ANY = "Semi - require approval for any remediation"
    SEMI_CORE = "Semi - require approval for core folders remediation"
    SEMI_NON_TEMP = "Semi - require approval for non-temp folders remediation"
    FULL = "Full - remediate threats automatically"

    @classmethod
    def parse(cls, text: str) -> AutomationLevel:
        """A level from its Defender name (either dash) or its short name (none, semi-any, semi-core,
        semi-non-temp, full); a ValueError listing the names otherwise."""
        wanted = " ".join(text.replace("–", "-").replace("—", "-").split()).lower()
        for level in cls:
            if wanted in (level.value.lower(), _SHORT[level]):
                return level
        names = ", ".join(f"{_SHORT[x]} ({x.value!r})" for x in cls)
        raise ValueError(f"automation level {text!r} is not one of: {names}")

    @property
    def short(self) -> str:
        return _SHORT[self]


_SHORT = {
    AutomationLevel.NONE: "none",
    AutomationLevel.SEMI_ANY: "semi-any",
    AutomationLevel.SEMI_CORE: "semi-core",
    AutomationLevel.SEMI_NON_TEMP: "semi-non-temp",
    AutomationLevel.FULL: "full",
}

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
    if level is AutomationLevel.SEMI_CORE:
        return RemediationDecision.NEEDS_APPROVAL if where is FolderClass.CORE else RemediationDecision.RUN
    return RemediationDecision.RUN if where is FolderClass.TEMP else RemediationDecision.NEEDS_APPROVAL
