"""Matching an installed package against an advisory by the ecosystem's own version rules, with the reason."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from vigil.tvm.model import Advisory, Affected, Event, EventKind, Package
from vigil.tvm.version_schemes import GO, SEMVER, VersionScheme, scheme_for


@dataclass(frozen=True, slots=True)
class Finding:
    """An advisory that applies to a package, and why."""

    package: Package
    advisory: Advisory
    why: str  # e.g. "openssl (source) 3.0.11-1~deb12u1 in [0, fixed 3.0.13-1~deb12u1)"
    fixed: str | None


@dataclass(frozen=True, slots=True)
class Weakness:
    """One CVE on one package, with every advisory that reached it."""

    cve: str
    package: Package
    findings: tuple[Finding, ...]


def normalise_name(ecosystem: str, name: str) -> str:
    """A package name as its ecosystem compares them (PyPI: PEP 503)."""
    if ecosystem == "PyPI":  # PEP 503: advisories and installers spell names differently
        return name.lower().replace("_", "-").replace(".", "-")
    return name


def _range_scheme(range_type: str, affected: Affected) -> VersionScheme:
    if range_type == "SEMVER":
        return GO if affected.ecosystem == "Go" else SEMVER
    return scheme_for(affected.ecosystem)


def _version_key(t: tuple[Any, EventKind, str]) -> Any:
    return t[0]


def _bound(introduced: str, kind: EventKind, raw: str) -> tuple[str, str | None]:
    if kind is EventKind.FIXED:
        return f"in [{introduced}, fixed {raw})", raw
    if kind is EventKind.LAST_AFFECTED:
        return f"in [{introduced}, last affected {raw}]", None
    return f"in [{introduced}, limit {raw})", None


def _in_events(version: Any, events: list[tuple[Any, EventKind, str]]) -> tuple[str, str | None] | None:
    """The OSV walk over events sorted by version: the interval holding `version` and its upper bound (the fix),
    or None. `introduced` opens; `fixed` and `limit` close excluding their own version, `last_affected` including
    it. Events above the installed version cannot change the state, so the walk stops at the first one (one
    comparison per event below it) and that event's successors give the bound without comparing."""
    introduced: str | None = None
    stop = len(events)
    for i, (parsed, kind, raw) in enumerate(events):
        if parsed is None:  # introduced "0"
            introduced = raw
            continue
        if parsed > version:
            stop = i
            break
        if kind is EventKind.INTRODUCED:
            introduced = raw
        elif kind is not EventKind.LAST_AFFECTED or parsed != version:
            introduced = None  # fixed/limit at or below the version, last_affected below it
    if introduced is None:
        return None
    for parsed, kind, raw in events[:stop]:  # a last_affected at exactly the installed version
        if kind is EventKind.LAST_AFFECTED and parsed == version:
            return _bound(introduced, kind, raw)
    for _, kind, raw in events[stop:]:  # the first upper bound above it
        if kind is not EventKind.INTRODUCED:
            return _bound(introduced, kind, raw)
    return f"in [{introduced}, no fix)", None


@lru_cache(maxsize=100_000)
def _sorted_events(scheme: VersionScheme, events: tuple[Event, ...]) -> list[tuple[Any, EventKind, str]]:
    """A range's events parsed and sorted by the scheme, once per distinct range (ranges recur across devices)."""
    parsed = [
        (
            None if e.kind is EventKind.INTRODUCED and e.version == "0" else scheme.parse(e.version),
            e.kind,
            e.version,
        )
        for e in events
    ]
    # introduced "0" sorts below every version; the rest by the scheme's order (univers objects compare).
    return [t for t in parsed if t[0] is None] + sorted((t for t in parsed if t[0] is not None), key=_version_key)


def match_affected(package: Package, affected: Affected) -> tuple[str, str | None] | None:
    """Why `package` is in `affected` (ranges, then explicit versions), with the fixed version, or None."""
    if affected.ecosystem != package.ecosystem:
        return None
    if normalise_name(affected.ecosystem, affected.name) != normalise_name(package.ecosystem, package.match_name):
        return None
    installed = package.match_version
    # Ranges first: they give the fixed version, which an explicit versions list does not.
    for r in affected.ranges:
        if r.type == "GIT":
            continue
        scheme = _range_scheme(r.type, affected)
        version = scheme.parse(installed)
        hit = _in_events(version, _sorted_events(scheme, r.events))
        if hit is not None:
            return hit
    if installed in affected.versions:
        return f"{installed} listed in the advisory's versions", None
    if affected.versions:
        scheme = scheme_for(affected.ecosystem)
        version = scheme.parse(installed)
        for v in affected.versions:  # the same version spelt differently ("1.0" and "1.0.0")
            try:
                if scheme.parse(v) == version:
                    return f"{installed} listed in the advisory's versions (as {v})", None
            except ValueError:
                continue
    return None


def explain(package: Package, why: str) -> str:
    """A finding's reason: the package (source for Debian), its installed version and what it fell in."""
    src = " (source)" if package.source_name else ""
    return f"{package.match_name}{src} {package.match_version} {why}"


def match_advisory(package: Package, advisory: Advisory) -> Finding | None:
    """The finding of `advisory` on `package`, or None; withdrawn advisories never match."""
    if advisory.withdrawn:
        return None
    for affected in advisory.affected:
        hit = match_affected(package, affected)
        if hit is not None:
            why, fixed = hit
            return Finding(package, advisory, explain(package, why), fixed)
    return None


def group_weaknesses(findings: Iterable[Finding]) -> list[Weakness]:
    """One weakness per (package, CVE) with all its advisories; an advisory without a CVE stands as its own id."""
    groups: dict[tuple[str, str, str, str], list[Finding]] = {}
    packages: dict[tuple[str, str, str, str], Package] = {}
    for f in findings:
        for cve in f.advisory.cves or (f.advisory.id,):
            key = (f.package.ecosystem, f.package.name, f.package.version, cve)
            groups.setdefault(key, []).append(f)
            packages[key] = f.package
    return [Weakness(k[3], packages[k], tuple(v)) for k, v in groups.items()]
