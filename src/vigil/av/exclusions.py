"""Antivirus exclusions: what scans and real-time protection leave alone, by path, folder, extension, name, process.

Kinds, as Defender for Endpoint on Linux has them: ``path`` (one file), ``folder`` (everything under it),
``extension`` (``.log``; case-insensitive), ``file_name`` (a base name anywhere), ``process`` (files a process
opens, by its executable's path or base name; real-time protection only). The lists a device uses are the
union of the global ones, its device group's and its local ones (``merge``): an exclusion is never removed by a
lower level, so a group cannot re-scan what the organisation excluded, and an endpoint can only add.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

KINDS = ("path", "folder", "extension", "file_name", "process")


class ExclusionError(ValueError):
    """An exclusion that cannot be used; names the kind and the value."""


def normalize(kind: str, value: str) -> str:
    """The stored form of an exclusion, or ExclusionError saying what is wrong with it."""
    if kind not in KINDS:
        raise ExclusionError(f"unknown exclusion kind {kind!r}; known: {', '.join(KINDS)}")
    v = value.strip()
    if not v:
        raise ExclusionError(f"{kind}: an empty value")
    if kind in ("path", "folder"):
        if not v.startswith("/"):
            raise ExclusionError(f"{kind} {value!r}: must be an absolute path")
        v = os.path.normpath(v)
        return v if kind == "path" or v == "/" else v + "/"
    if kind == "extension":
        v = v.lower()
        v = v if v.startswith(".") else "." + v
        if "/" in v or len(v) < 2:
            raise ExclusionError(f"extension {value!r}: expected e.g. .log")
        return v
    if "/" in v and kind == "file_name":
        raise ExclusionError(f"file_name {value!r}: a base name, without '/'")
    return os.path.normpath(v) if v.startswith("/") else v


@dataclass(frozen=True)
class Exclusions:
    path: frozenset[str] = frozenset()
    folder: tuple[str, ...] = ()
    extension: frozenset[str] = frozenset()
    file_name: frozenset[str] = frozenset()
    process: frozenset[str] = frozenset()

    @classmethod
    def of(cls, lists: Mapping[str, Iterable[str]]) -> Exclusions:
        """From kind → values; each value normalized (ExclusionError names the bad one)."""
        unknown = set(lists) - set(KINDS)
        if unknown:
            raise ExclusionError(f"unknown exclusion kind {sorted(unknown)[0]!r}; known: {', '.join(KINDS)}")
        n = {k: sorted({normalize(k, v) for v in lists.get(k, ())}) for k in KINDS}
        return cls(frozenset(n["path"]), tuple(n["folder"]), frozenset(n["extension"]), frozenset(n["file_name"]),
                   frozenset(n["process"]))

    def as_lists(self) -> dict[str, list[str]]:
        return {k: sorted(getattr(self, k)) for k in KINDS}

    def __bool__(self) -> bool:
        return any(getattr(self, k) for k in KINDS)

    def file(self, path: str) -> bool:
        """True when a scan leaves ``path`` alone."""
        if path in self.path or (self.folder and path.startswith(self.folder)):
            return True
        name = path.rsplit("/", 1)[-1]
        if name in self.file_name:
            return True
        dot = name.rfind(".")
        return dot > 0 and name[dot:].lower() in self.extension

    def by_process(self, executable: str) -> bool:
        """True when files opened by this program are left alone (real-time protection)."""
        return bool(self.process) and (executable in self.process or executable.rsplit("/", 1)[-1] in self.process)


def merge(*levels: Exclusions) -> Exclusions:
    """The union of global, group and local exclusions (see the module docstring)."""
    return Exclusions.of({k: [v for e in levels for v in getattr(e, k)] for k in KINDS})


@dataclass
class ExclusionFile:
    """The endpoint's own exclusions, ``<state>/av/exclusions.json``."""

    file: Path
    lists: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def load(cls, file: Path) -> ExclusionFile:
        try:
            raw = json.loads(file.read_text())
        except FileNotFoundError:
            raw = {}
        except (OSError, ValueError) as e:
            raise ExclusionError(f"{file}: unreadable: {e}") from None
        if not isinstance(raw, dict) or not all(isinstance(v, list) for v in raw.values()):
            raise ExclusionError(f"{file}: expected an object of kind → list")
        Exclusions.of(raw)  # every entry valid, or the error names it
        return cls(file, {k: list(raw.get(k, [])) for k in KINDS})

    def exclusions(self) -> Exclusions:
        return Exclusions.of(self.lists)

    def add(self, kind: str, value: str) -> str:
        v = normalize(kind, value)
        if v not in self.lists.setdefault(kind, []):
            self.lists[kind].append(v)
        return v

    def remove(self, kind: str, value: str) -> str:
        v = normalize(kind, value)
        if v not in self.lists.get(kind, []):
            raise ExclusionError(f"no {kind} exclusion {v!r}")
        self.lists[kind].remove(v)
        return v

    def save(self) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_name(f".{self.file.name}.tmp")
        tmp.write_text(json.dumps({k: sorted(v) for k, v in self.lists.items() if v}, indent=2))
        os.replace(tmp, self.file)
