"""The Debian security tracker's DSA/DLA lists as advisories on SOURCE packages with each release's fixed version."""

from __future__ import annotations

import re
from collections.abc import Iterator

from vigil.tvm.feeds import FeedError
from vigil.tvm.model import Advisory, Affected, Event, EventKind, Range

# Debian's release codenames -> OSV's "Debian:N" ecosystems
RELEASES = {
    "woody": "3.0",
    "sarge": "3.1",
    "etch": "4",
    "lenny": "5",
    "squeeze": "6",
    "wheezy": "7",
    "jessie": "8",
    "stretch": "9",
    "buster": "10",
    "bullseye": "11",
    "bookworm": "12",
    "trixie": "13",
}

_HEADER = re.compile(r"^\[(\d{1,2} \w{3} \d{4})\] ((?:DSA|DLA)-[\d-]+) (\S+)(.*)$")  # notices have no " - title"
_CVES = re.compile(r"^\{([^}]*)\}$")
_FIX = re.compile(r"^\[(\w+)\] - (\S+)\s+(\S+)(?:\s.*)?$")


def parse_list(text: str, path: str) -> tuple[list[Advisory], list[FeedError]]:
    """Every entry of a DSA or DLA list; a line that fits no form is reported and the rest still load.

    `<not-affected>`, `<unfixed>`, `<end-of-life>` and the like give no fixed version, so they add no range."""
    advisories: list[Advisory] = []
    errors: list[FeedError] = []
    for entry in _entries(text, path, errors):
        advisories.append(entry)
    return advisories, errors


def _entries(text: str, path: str, errors: list[FeedError]) -> Iterator[Advisory]:
    current: tuple[str, str] | None = None
    cves: list[str] = []
    fixes: list[Affected] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("NOTE:"):
            continue
        if m := _HEADER.match(line):
            if current:
                yield Advisory(current[0], tuple(cves), tuple(fixes), summary=current[1])
            current, cves, fixes = (m.group(2), (m.group(3) + m.group(4)).strip()), [], []
        elif current is None:
            errors.append(FeedError(path, n, f"a line before the first advisory header: {line[:80]!r}"))
        elif m := _CVES.match(line):
            cves.extend(m.group(1).split())
        elif m := _FIX.match(line):
            release, package, version = m.groups()
            if version.startswith("<"):
                continue
            if release not in RELEASES:
                errors.append(FeedError(path, n, f"unknown Debian release {release!r}"))
                continue
            event = (Event(EventKind.INTRODUCED, "0"), Event(EventKind.FIXED, version))
            fixes.append(Affected(f"Debian:{RELEASES[release]}", package, (Range("ECOSYSTEM", event),)))
        else:
            errors.append(
                FeedError(path, n, f"not a header, CVE list or '[release] - package version' line: {line[:80]!r}")
            )
    if current:
        yield Advisory(current[0], tuple(cves), tuple(fixes), summary=current[1])
