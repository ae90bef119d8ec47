"""The feed store: every source's advisories normalised into one OSV-shaped SQLite database, indexed by
ecosystem and package name, with CISA KEV and EPSS beside them; and the scan of an inventory against it.

This module holds the schema and the logic over an open `sqlite3.Connection`; opening files, walking corpora
and caching stores are the adapter's (`vigil.content.tvm_feeds`).

Schema (version `SCHEMA_VERSION`)::

    meta(key, value)                                   schema version, built-at, sources summary
    advisory(id, source, severity, cvss, modified, withdrawn, cves, doc)
                                                       doc = the advisory as compact OSV-shaped JSON; cves = its
                                                       CVE ids, space-separated
    affected(ecosystem, name, advisory_id, entry)      one row per package entry of an advisory: ecosystem with
                                                       release, name (PyPI PEP 503-normalised), and that entry's
                                                       own ranges and versions as JSON, so a lookup decodes only
                                                       what concerns the package; index (ecosystem, name)
    kev(cve)                                           CISA's known exploited vulnerabilities
    epss(cve, probability, percentile)
    source(name, files, advisories, errors, newest)    per top-level corpus folder; newest = its newest entry's date
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from vigil.tvm.feeds.corpus import ParsedFile, StoredAdvisory
from vigil.tvm.feeds.exploitation import Epss
from vigil.tvm.matching import explain, match_affected, normalise_name
from vigil.tvm.model import Advisory, Affected, Event, EventKind, Package, Range
from vigil.tvm.version_schemes import UnknownEcosystem

SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE advisory (
    id TEXT PRIMARY KEY, source TEXT NOT NULL, severity TEXT, cvss REAL, modified TEXT, withdrawn TEXT,
    cves TEXT NOT NULL, doc TEXT NOT NULL
);
CREATE TABLE affected (ecosystem TEXT NOT NULL, name TEXT NOT NULL, advisory_id TEXT NOT NULL, entry TEXT NOT NULL);
CREATE INDEX affected_by_package ON affected (ecosystem, name);
CREATE TABLE kev (cve TEXT PRIMARY KEY);
CREATE TABLE epss (cve TEXT PRIMARY KEY, probability REAL NOT NULL, percentile REAL NOT NULL);
CREATE TABLE source (
    name TEXT PRIMARY KEY, files INTEGER NOT NULL, advisories INTEGER NOT NULL, errors INTEGER NOT NULL, newest TEXT
);
"""

_KINDS = {k.value: k for k in EventKind}


class StoreError(ValueError):
    """A database that is not a feed store of this schema version."""


def affected_to_doc(x: Affected) -> dict[str, Any]:
    doc: dict[str, Any] = {"package": {"ecosystem": x.ecosystem, "name": x.name}}
    if x.ranges:
        doc["ranges"] = [{"type": r.type, "events": [{e.kind.value: e.version} for e in r.events]} for r in x.ranges]
    if x.versions:
        doc["versions"] = list(x.versions)
    return doc


def affected_from_doc(x: dict[str, Any]) -> Affected:
    return Affected(
        x["package"]["ecosystem"],
        x["package"]["name"],
        tuple(
            Range(r["type"], tuple(Event(_KINDS[k], v) for e in r["events"] for k, v in e.items()))
            for r in x.get("ranges", ())
        ),
        tuple(x.get("versions", ())),
    )


def advisory_to_doc(a: Advisory) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": a.id}
    if a.aliases:
        doc["aliases"] = list(a.aliases)
    if a.related:
        doc["related"] = list(a.related)
    if a.summary:
        doc["summary"] = a.summary
    if a.withdrawn:
        doc["withdrawn"] = a.withdrawn
    if a.severity:
        doc["severity"] = [{"type": t, "score": s} for t, s in a.severity]
    doc["affected"] = [affected_to_doc(x) for x in a.affected]
    return doc


def advisory_from_doc(doc: dict[str, Any]) -> Advisory:
    """The inverse of `advisory_to_doc` (the store's own JSON, trusted: no shape checks)."""
    affected = tuple(affected_from_doc(x) for x in doc["affected"])
    return Advisory(
        doc["id"],
        tuple(doc.get("aliases", ())),
        affected,
        summary=doc.get("summary", ""),
        withdrawn=doc.get("withdrawn"),
        severity=tuple((s["type"], s["score"]) for s in doc.get("severity", ())),
        related=tuple(doc.get("related", ())),
    )


@lru_cache(maxsize=100_000)
def _entry(text: str) -> Affected:
    """A stored package entry, decoded once: the same entries come back for every device that has the package."""
    return affected_from_doc(json.loads(text))


@dataclass(slots=True)
class SourceStats:
    files: int = 0
    advisories: int = 0
    errors: int = 0
    newest: str | None = None


@dataclass(slots=True)
class FeedBuilder:
    """Collects parsed corpus files and writes them into an empty database in one transaction.

    An advisory id seen twice (a folder and its zip export) keeps the record modified last."""

    advisories: dict[str, StoredAdvisory] = field(default_factory=dict)
    kev: set[str] = field(default_factory=set)
    epss: dict[str, Epss] = field(default_factory=dict)
    sources: dict[str, SourceStats] = field(default_factory=dict)

    def add(self, source: str, parsed: ParsedFile) -> None:
        stats = self.sources.setdefault(source, SourceStats())
        if parsed.kind == "skipped" and not parsed.errors:
            return
        stats.files += 1
        stats.errors += len(parsed.errors)
        stats.advisories += len(parsed.advisories)
        if parsed.newest and (stats.newest is None or parsed.newest > stats.newest):
            stats.newest = parsed.newest
        for s in parsed.advisories:
            old = self.advisories.get(s.advisory.id)
            if old is None or (s.modified or "") >= (old.modified or ""):
                self.advisories[s.advisory.id] = s
        self.kev |= parsed.kev
        self.epss.update(parsed.epss)

    def write(self, conn: sqlite3.Connection, built_at: str) -> None:
        conn.executescript(SCHEMA)
        with conn:
            conn.executemany(
                "INSERT INTO advisory VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (
                        s.advisory.id,
                        s.source,
                        s.severity,
                        s.cvss,
                        s.modified,
                        s.advisory.withdrawn,
                        " ".join(s.advisory.cves),
                        json.dumps(advisory_to_doc(s.advisory), separators=(",", ":")),
                    )
                    for s in self.advisories.values()
                ),
            )
            conn.executemany(
                "INSERT INTO affected VALUES (?, ?, ?, ?)",
                dict.fromkeys(
                    (
                        x.ecosystem,
                        normalise_name(x.ecosystem, x.name),
                        s.advisory.id,
                        json.dumps(affected_to_doc(x), separators=(",", ":")),
                    )
                    for s in self.advisories.values()
                    for x in s.advisory.affected
                ),
            )
            conn.executemany("INSERT INTO kev VALUES (?)", ((c,) for c in sorted(self.kev)))
            conn.executemany(
                "INSERT INTO epss VALUES (?, ?, ?)", ((c, e.probability, e.percentile) for c, e in self.epss.items())
            )
            conn.executemany(
                "INSERT INTO source VALUES (?, ?, ?, ?, ?)",
                ((n, s.files, s.advisories, s.errors, s.newest) for n, s in sorted(self.sources.items()) if s.files),
            )
            conn.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                (("schema_version", str(SCHEMA_VERSION)), ("built_at", built_at)),
            )


@dataclass(frozen=True, slots=True)
class ScanFinding:
    """One advisory on one installed package, as `vigil tvm scan` reports it."""

    package: str  # for Debian the source package, which the advisory names
    ecosystem: str
    installed: str
    advisory: str
    aliases: tuple[str, ...]  # CVE ids
    fixed: str | None
    severity: str | None
    kev: bool
    epss: float | None
    why: str
    binaries: tuple[str, ...] = ()  # Debian: the installed binary packages built from that source

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "package": self.package,
            "ecosystem": self.ecosystem,
            "installed": self.installed,
            "advisory": self.advisory,
            "aliases": list(self.aliases),
            "fixed": self.fixed,
            "severity": self.severity,
            "kev": self.kev,
            "epss": self.epss,
            "why": self.why,
        }
        if self.binaries:
            out["binaries"] = list(self.binaries)
        return out


@dataclass(frozen=True, slots=True)
class SourceInfo:
    name: str
    files: int
    advisories: int
    errors: int
    newest: str | None


class FeedStore:
    """A built feed store, read: candidate advisories by package, KEV and EPSS facts, and the scan."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as e:
            raise StoreError(f"not a Vigil feed store: {e}") from None
        if meta.get("schema_version") != str(SCHEMA_VERSION):
            raise StoreError(
                f"feed store schema version {meta.get('schema_version')!r}, this Vigil reads {SCHEMA_VERSION}"
            )
        self.built_at = meta.get("built_at", "")
        self._kev = {r[0] for r in conn.execute("SELECT cve FROM kev")}
        self._epss: dict[str, float | None] = {}

    def advisory_count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM advisory").fetchone()[0])

    def sources(self) -> list[SourceInfo]:
        return [SourceInfo(*r) for r in self.conn.execute("SELECT * FROM source ORDER BY name")]

    def candidate_rows(self, ecosystem: str, name: str) -> list[tuple[str, str, str | None, str, str | None]]:
        """(entry, advisory id, severity, CVEs, withdrawn) of each advisory entry naming this package: the
        indexed lookup, without version logic."""
        return self.conn.execute(
            "SELECT f.entry, a.id, a.severity, a.cves, a.withdrawn FROM affected f "
            "JOIN advisory a ON a.id = f.advisory_id WHERE f.ecosystem = ? AND f.name = ?",
            (ecosystem, normalise_name(ecosystem, name)),
        ).fetchall()

    def advisory(self, advisory_id: str) -> Advisory | None:
        row = self.conn.execute("SELECT doc FROM advisory WHERE id = ?", (advisory_id,)).fetchone()
        return advisory_from_doc(json.loads(row[0])) if row else None

    def in_kev(self, cve: str) -> bool:
        return cve in self._kev

    def epss(self, cve: str) -> float | None:
        if cve not in self._epss:
            row = self.conn.execute("SELECT probability FROM epss WHERE cve = ?", (cve,)).fetchone()
            self._epss[cve] = row[0] if row else None
        return self._epss[cve]

    def scan(self, packages: Iterable[Package], problems: list[str] | None = None) -> list[ScanFinding]:
        """Every advisory matching an installed package by its ecosystem's version rules.

        Debian binaries built from one source are matched once, on the source package and version. A version the
        ecosystem's scheme cannot parse (installed or in the advisory) skips that one comparison and is reported
        in `problems`; it never stops the scan."""
        groups: dict[tuple[str, str, str], list[Package]] = {}
        for p in packages:
            groups.setdefault((p.ecosystem, p.match_name, p.match_version), []).append(p)
        findings: list[ScanFinding] = []
        for (ecosystem, name, _version), members in groups.items():
            rows = self.candidate_rows(ecosystem, name)
            if not rows:
                continue
            probe = members[0]
            seen: set[str] = set()
            for entry, advisory_id, severity, cve_text, withdrawn in rows:
                if withdrawn or advisory_id in seen:
                    continue
                try:
                    hit = match_affected(probe, _entry(entry))
                except (ValueError, UnknownEcosystem) as e:  # InvalidVersion is a ValueError
                    if problems is not None:
                        problems.append(f"{ecosystem} {name} {probe.match_version} vs {advisory_id}: {e}")
                    continue
                if hit is None:
                    continue
                seen.add(advisory_id)
                cves = tuple(cve_text.split())
                scores = [e for e in (self.epss(c) for c in cves) if e is not None]
                findings.append(
                    ScanFinding(
                        package=name,
                        ecosystem=ecosystem,
                        installed=probe.match_version,
                        advisory=advisory_id,
                        aliases=cves,
                        fixed=hit[1],
                        severity=severity,
                        kev=any(self.in_kev(c) for c in cves),
                        epss=max(scores) if scores else None,
                        why=explain(probe, hit[0]),
                        binaries=tuple(sorted({m.name for m in members}))
                        if probe.source_name and any(m.name != name for m in members)
                        else (),
                    )
                )
        findings.sort(key=lambda f: (f.ecosystem, f.package, f.advisory))
        return findings

