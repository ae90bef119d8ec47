"""Inventories read from disk for TVM: a folder walked for Python distributions (dist-info / egg-info in any
site-packages or virtualenv), npm lockfiles and installed node_modules packages; the host's Debian release.
The readers of each format are the engine's (`vigil.tvm.inventory`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from vigil.tvm.feeds import FeedError
from vigil.tvm.inventory import read_dist_metadata, read_npm_package_json, read_package_lock
from vigil.tvm.model import Package

_SKIP = {".git", "__pycache__", "proc", "sys", "dev"}


@dataclass(slots=True)
class PathInventory:
    packages: list[Package] = field(default_factory=list)
    errors: list[FeedError] = field(default_factory=list)


def _read(p: Path, errors: list[FeedError]) -> str | None:
    try:
        return p.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        errors.append(FeedError(str(p), None, f"cannot read: {e.strerror or e}"))
        return None


def scan_path(root: Path) -> PathInventory:
    """Every Python distribution, npm lockfile and installed npm package under `root` (symlinks not followed);
    an unreadable or malformed file is reported and the walk goes on."""
    out = PathInventory()
    seen: set[tuple[str, str, str]] = set()

    def add(pkg: Package | None) -> None:
        if pkg is not None and (pkg.ecosystem, pkg.name, pkg.version) not in seen:
            seen.add((pkg.ecosystem, pkg.name, pkg.version))
            out.packages.append(pkg)

    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        dirnames[:] = sorted(x for x in dirnames if x not in _SKIP or d != root)
        try:
            if d.name.endswith(".dist-info") and "METADATA" in filenames:
                text = _read(d / "METADATA", out.errors)
                if text is not None:
                    add(read_dist_metadata(text, str(d / "METADATA")))
            elif d.name.endswith(".egg-info") and "PKG-INFO" in filenames:
                text = _read(d / "PKG-INFO", out.errors)
                if text is not None:
                    add(read_dist_metadata(text, str(d / "PKG-INFO")))
            if "package.json" in filenames and (d.parent.name == "node_modules" or (d.parent.parent.name ==
                                                "node_modules" and d.parent.name.startswith("@"))):
                text = _read(d / "package.json", out.errors)
                if text is not None:
                    add(read_npm_package_json(text, str(d / "package.json")))
        except FeedError as e:
            out.errors.append(e)
        for f in filenames:
            p = d / f
            try:
                if f == "package-lock.json" and "node_modules" not in d.parts:
                    text = _read(p, out.errors)
                    if text is not None:
                        for pkg in read_package_lock(text, str(p)):
                            add(pkg)
                elif f.endswith(".egg-info") and p.is_file():  # distutils' single-file egg-info
                    text = _read(p, out.errors)
                    if text is not None:
                        add(read_dist_metadata(text, str(p)))
            except FeedError as e:
                out.errors.append(e)
    return out


def debian_release(os_release: Path = Path("/etc/os-release")) -> str | None:
    """The host's Debian major release ("12") from os-release, or None on another distribution."""
    try:
        fields = dict(
            line.split("=", 1) for line in os_release.read_text().splitlines() if "=" in line
        )
    except OSError:
        return None
    values = {k: v.strip().strip('"') for k, v in fields.items()}
    if values.get("ID") != "debian":
        return None
    return values.get("VERSION_ID") or None
