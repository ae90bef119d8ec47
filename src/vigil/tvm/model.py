"""The OSV-shaped advisory model and the inventory package it is matched against."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class EventKind(StrEnum):
    INTRODUCED = "introduced"
    FIXED = "fixed"
    LAST_AFFECTED = "last_affected"
    LIMIT = "limit"


@dataclass(frozen=True, slots=True)
class Event:
    kind: EventKind
    version: str


@dataclass(frozen=True, slots=True)
class Range:
    type: str  # ECOSYSTEM, SEMVER or GIT (GIT ranges name commits and are not matched against versions)
    events: tuple[Event, ...]


@dataclass(frozen=True, slots=True)
class Affected:
    ecosystem: str  # OSV's, with the release: "Debian:12", "AlmaLinux:9", "PyPI", "Go", "npm"
    name: str  # for Debian: the SOURCE package
    ranges: tuple[Range, ...] = ()
    versions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Advisory:
    id: str
    aliases: tuple[str, ...] = ()
    affected: tuple[Affected, ...] = ()
    summary: str = ""
    withdrawn: str | None = None
    severity: tuple[tuple[str, str], ...] = ()  # (type, score or vector), as OSV's "severity"
    related: tuple[str, ...] = ()

    @property
    def cves(self) -> tuple[str, ...]:
        """The CVE ids it names: aliases, and for feeds that list them only there (AlmaLinux) `related`."""
        seen = dict.fromkeys(a for a in (*self.aliases, *self.related) if a.startswith("CVE-"))
        if self.id.startswith("CVE-"):
            seen = {self.id: None, **seen}
        return tuple(seen)


@dataclass(frozen=True, slots=True)
class Package:
    """One installed package; Debian packages carry their source package, which is what advisories name."""

    ecosystem: str
    name: str
    version: str
    source_name: str | None = None
    source_version: str | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def match_name(self) -> str:
        return self.source_name or self.name

    @property
    def match_version(self) -> str:
        return self.source_version or self.version
