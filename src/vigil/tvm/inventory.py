"""Inventory readers: installed packages from dpkg's status file and pinned requirements, as `Package`s."""

from __future__ import annotations

import json
import re

from vigil.tvm.feeds import FeedError
from vigil.tvm.model import Package

_SOURCE = re.compile(r"^(\S+)(?:\s+\((\S+)\))?$")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*===?\s*([^\s;#]+)")


def read_dpkg_status(text: str, path: str, release: str) -> list[Package]:
    """Installed packages of a dpkg status file, each with its source package and version (for binNMUs these differ
    from the binary's); `release` is the Debian major version ("12"). A stanza without Package/Version raises."""
    packages: list[Package] = []
    for start, stanza in _stanzas(text):
        fields = dict(stanza)
        if "install ok installed" not in fields.get("Status", ""):
            continue
        if "Package" not in fields or "Version" not in fields:
            raise FeedError(path, start, "an installed package's stanza without Package or Version")
        src_name, src_version = fields["Package"], fields["Version"]
        if "Source" in fields:
            m = _SOURCE.match(fields["Source"].strip())
            if m is None:
                raise FeedError(path, start, f"unreadable Source field {fields['Source']!r}")
            src_name, src_version = m.group(1), m.group(2) or fields["Version"]
        packages.append(Package(f"Debian:{release}", fields["Package"], fields["Version"], src_name, src_version))
    return packages


def _stanzas(text: str) -> list[tuple[int, list[tuple[str, str]]]]:
    out: list[tuple[int, list[tuple[str, str]]]] = []
    current: list[tuple[str, str]] = []
    start = 1
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            if current:
                out.append((start, current))
            current = []
            continue
        if not current:
            start = n
        if line[0] in " \t":  # a continuation line of a multi-line field (Description, Conffiles)
            continue
        key, sep, value = line.partition(":")
        if sep:
            current.append((key, value.strip()))
    if current:
        out.append((start, current))
    return out


def read_requirements(text: str, path: str) -> list[Package]:
    """Pinned `name==version` lines of a requirements file; options, comments and blank lines are skipped, an
    unpinned requirement raises with its line (a version is needed to match)."""
    packages: list[Package] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        m = _PIN.match(line)
        if m is None:
            raise FeedError(path, n, f"not a pinned 'name==version' requirement: {line[:80]!r}")
        packages.append(Package("PyPI", m.group(1), m.group(2)))
    return packages


def read_package_lock(text: str, path: str) -> list[Package]:
    """npm's package-lock.json: lockfile v2/v3 `packages` ("node_modules/a/node_modules/b" keys) or v1's nested
    `dependencies`; the root project and linked (version-less) entries are skipped."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise FeedError(path, e.lineno, f"not JSON: {e.msg}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("packages", doc.get("dependencies")), dict):
        raise FeedError(path, None, "not an npm package-lock.json: no 'packages' or 'dependencies' object")
    found: dict[tuple[str, str], Package] = {}
    if isinstance(doc.get("packages"), dict):
        for key, entry in doc["packages"].items():
            if not key or not isinstance(entry, dict) or "node_modules/" not in key:
                continue
            name = entry.get("name") or key.rsplit("node_modules/", 1)[1]
            version = entry.get("version")
            if isinstance(version, str) and not entry.get("link"):
                found[(name, version)] = Package("npm", name, version)
    else:
        stack = [doc["dependencies"]]
        while stack:
            deps = stack.pop()
            for name, entry in deps.items():
                if isinstance(entry, dict) and isinstance(entry.get("version"), str):
                    found[(name, entry["version"])] = Package("npm", name, entry["version"])
                    if isinstance(entry.get("dependencies"), dict):
                        stack.append(entry["dependencies"])
    return sorted(found.values(), key=lambda p: (p.name, p.version))


def read_dist_metadata(text: str, path: str) -> Package:
    """A Python distribution's METADATA (dist-info) or PKG-INFO (egg-info): its Name and Version headers."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break  # the headers end at the first blank line; the description follows
        key, sep, value = line.partition(":")
        if sep and key in ("Name", "Version") and key not in fields:
            fields[key] = value.strip()
    if "Name" not in fields or "Version" not in fields:
        raise FeedError(path, None, "distribution metadata without Name or Version")
    return Package("PyPI", fields["Name"], fields["Version"])


def read_npm_package_json(text: str, path: str) -> Package | None:
    """An installed npm package's package.json (under node_modules); None when it has no name or version."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise FeedError(path, e.lineno, f"not JSON: {e.msg}") from None
    if isinstance(doc, dict) and isinstance(doc.get("name"), str) and isinstance(doc.get("version"), str):
        return Package("npm", doc["name"], doc["version"])
    return None
