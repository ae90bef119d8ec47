"""Rule files: find them under files and folders and read their bytes, once (no parsing here)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from vigil.detect.model import ErrorKind, RuleLoadError

RULE_SUFFIXES = (".yml", ".yaml")


@dataclass(frozen=True)
class RuleSource:
    """One rule file's bytes, read once: hashed for the compiled-rule cache, then parsed."""

    path: Path
    data: bytes


def _rule_files(folder: Path) -> list[Path]:
    # os.scandir over strings: pathlib's rglob costs more than reading the files. Sorted by path parts,
    # as Path objects sort, so the load order (first of two equal ids wins) is what it always was.
    found: list[tuple[tuple[str, ...], str]] = []
    pending: list[tuple[tuple[str, ...], str]] = [((), str(folder))]
    while pending:
        parts, directory = pending.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_dir():
                    pending.append(((*parts, entry.name), entry.path))
                elif entry.name.endswith(RULE_SUFFIXES) and entry.is_file():
                    found.append(((*parts, entry.name), entry.path))
    found.sort()
    return [Path(full) for _, full in found]


def discover(paths: Iterable[Path]) -> tuple[list[Path], list[RuleLoadError]]:
    """Rule files under the given files and directories, sorted for a stable load order."""
    files: list[Path] = []
    errors: list[RuleLoadError] = []
    for path in paths:
        if path.is_dir():
            files.extend(_rule_files(path))
        elif path.is_file():
            files.append(path)
        else:
            errors.append(RuleLoadError(path, ErrorKind.READ, "no such file or directory"))
    return files, errors


def _read(path: str) -> bytes:
    # Raw descriptors: a buffered file object per rule costs more than the read itself.
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_sources(paths: Iterable[Path]) -> tuple[list[RuleSource], list[RuleLoadError]]:
    """The bytes of every rule file under `paths`; missing and unreadable paths become errors."""
    files, errors = discover(paths)
    sources: list[RuleSource] = []
    for file in files:
        try:
            sources.append(RuleSource(file, _read(str(file))))
        except OSError as e:
            errors.append(RuleLoadError(file, ErrorKind.READ, str(e)))
    return sources, errors
