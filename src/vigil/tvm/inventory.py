"""Inventory readers: installed packages from dpkg's status file and pinned requirements, as `Package`s."""

from __future__ import annotations

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
