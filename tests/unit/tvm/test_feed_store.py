"""The feed store built from a raw corpus folder (and zip exports): every source normalised, indexed by
ecosystem and name, per-file errors reported and not fatal, and the scan over it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.unit.tvm.corpus_support import DPKG_STATUS, GO_RECORD, write_corpus
from vigil.content.tvm_feeds import FeedsError, build_store, cached_store, corpus_key, default_cache_dir, open_store
from vigil.tvm.feeds.osv import parse_osv
from vigil.tvm.feedstore import FeedStore, StoreError, advisory_from_doc, advisory_to_doc
from vigil.tvm.inventory import read_dpkg_status
from vigil.tvm.model import Package


def test_every_source_lands_in_one_store_and_bad_files_are_reported(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "vulns")
    messages: list[str] = []
    report = build_store(corpus, tmp_path / "feeds.sqlite", progress=messages.append, every=0)
    # 3 DSAs + 1 DLA + 2 PYSEC (the broken third is an error) + GO + ALSA + the zip's GHSA
    assert report.advisories == 9
    assert report.kev == 2 and report.epss == 3
    assert [str(e) for e in report.errors if "PYSEC-2099-9" in str(e)], report.errors
    assert len(report.errors) == 1  # README, PROVENANCE and the KEV JSON schema are skipped, not errors
    assert messages and "files read" in messages[0]
    store = open_store(tmp_path / "feeds.sqlite")
    sources = {s.name: s for s in store.sources()}
    assert sources["debian-security-tracker"].newest == "2025-02-12"
    assert sources["debian-security-tracker"].advisories == 4
    assert sources["npm-export"].advisories == 1  # the zip export is its own source
    assert sources["pypa"].errors == 1
    assert sources["kev"].newest == "2025-01-02"
    # indexed by ecosystem (with the release) and normalised name
    rows = store.conn.execute("SELECT ecosystem, name FROM affected ORDER BY 1, 2").fetchall()
    assert ("Debian:12", "openssl") in rows and ("Debian:11", "openssl") in rows
    assert ("PyPI", "demo-lib") in rows  # "Demo_Lib" in the record, PEP 503-normalised
    assert ("Go", "example.com/mod") in rows and ("AlmaLinux:9", "bash") in rows and ("npm", "left-pad") in rows
    plan = store.conn.execute(
        "EXPLAIN QUERY PLAN SELECT advisory_id FROM affected WHERE ecosystem = ? AND name = ?", ("Go", "x")
    ).fetchall()
    assert "affected_by_package" in str(plan)


def test_severity_comes_from_cvss_then_the_vendor(tmp_path: Path) -> None:
    build_store(write_corpus(tmp_path / "vulns"), tmp_path / "f.sqlite")
    store = open_store(tmp_path / "f.sqlite")
    sev = dict(store.conn.execute("SELECT id, severity FROM advisory").fetchall())
    cvss = dict(store.conn.execute("SELECT id, cvss FROM advisory").fetchall())
    assert sev["GO-2099-0001"] == "critical" and cvss["GO-2099-0001"] == 9.8  # computed by the cvss package
    assert sev["ALSA-2099:0001"] == "high"  # "Important:" in AlmaLinux's summary
    assert sev["GHSA-npm1-0000-0000"] == "medium"  # database_specific MODERATE
    assert sev["DSA-5900-1"] is None  # the tracker gives none


def test_scan_matches_debian_on_the_source_and_honours_backports(tmp_path: Path) -> None:
    build_store(write_corpus(tmp_path / "vulns"), tmp_path / "f.sqlite")
    store = open_store(tmp_path / "f.sqlite")
    findings = store.scan(read_dpkg_status(DPKG_STATUS, "status", "12"))
    by_adv = {f.advisory: f for f in findings}
    # 3.0.11-1~deb12u1 < 3.0.11-1~deb12u2 (DSA-5800-1) and < 3.0.15-1~deb12u1 (DSA-5900-1)
    assert set(by_adv) == {"DSA-5800-1", "DSA-5900-1"}
    f = by_adv["DSA-5900-1"]
    assert (f.package, f.ecosystem, f.installed, f.fixed) == ("openssl", "Debian:12", "3.0.11-1~deb12u1",
                                                              "3.0.15-1~deb12u1")
    assert f.aliases == ("CVE-2099-0001", "CVE-2099-0002")
    assert f.kev is True and f.epss == 0.91
    assert f.binaries == ("libssl3", "openssl")  # one finding for the source, its binaries named
    assert "openssl (source) 3.0.11-1~deb12u1" in f.why
    # the back-port 3.0.11-1~deb12u2 is fixed for DSA-5800-1 although upstream 3.0.11 < 3.0.15
    fixed = read_dpkg_status(DPKG_STATUS.replace("3.0.11-1~deb12u1", "3.0.11-1~deb12u2"), "s", "12")
    assert {f.advisory for f in store.scan(fixed)} == {"DSA-5900-1"}
    # bullseye's fixes do not apply to bookworm packages and vice versa
    assert store.scan([Package("Debian:11", "openssl", "1.1.1w-0+deb11u2")])[0].advisory == "DLA-4000-1"


def test_scan_other_ecosystems_and_withdrawn(tmp_path: Path) -> None:
    build_store(write_corpus(tmp_path / "vulns"), tmp_path / "f.sqlite")
    store = open_store(tmp_path / "f.sqlite")
    inv = [
        Package("PyPI", "demo.lib", "1.0.0"),  # PYSEC-2099-2 lists 1.0.0 but is withdrawn
        Package("Go", "example.com/mod", "v1.3.0"),
        Package("Go", "example.com/mod", "v1.4.1"),
        Package("AlmaLinux:9", "bash", "5.1.8-6.el9"),
        Package("npm", "left-pad", "1.3.0"),
    ]
    got = {(f.advisory, f.installed) for f in store.scan(inv)}
    assert got == {
        ("PYSEC-2099-1", "1.0.0"),
        ("GO-2099-0001", "v1.3.0"),
        ("ALSA-2099:0001", "5.1.8-6.el9"),
        ("GHSA-npm1-0000-0000", "1.3.0"),
    }
    go = next(f for f in store.scan(inv) if f.advisory == "GO-2099-0001")
    assert go.aliases == ("CVE-2099-2000",) and go.kev and go.severity == "critical"
    alma = next(f for f in store.scan(inv) if f.advisory.startswith("ALSA"))
    assert alma.aliases == ("CVE-2099-3000",)  # AlmaLinux names its CVEs under "related"


def test_the_cache_is_reused_until_the_corpus_changes(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "vulns")
    cache = tmp_path / "cache"
    first, report = cached_store(corpus, cache)
    assert report is not None
    again, report2 = cached_store(corpus, cache)
    assert again == first and report2 is None
    key = corpus_key(corpus)
    (corpus / "pypa" / "vulns" / "demo-lib" / "PYSEC-2099-1.yaml").write_text(
        (corpus / "pypa" / "vulns" / "demo-lib" / "PYSEC-2099-1.yaml").read_text().replace("2.0.0", "2.0.1")
    )
    assert corpus_key(corpus) != key
    rebuilt, report3 = cached_store(corpus, cache)
    assert rebuilt != first and report3 is not None
    f = open_store(rebuilt).scan([Package("PyPI", "demo-lib", "2.0.0")])
    assert [x.fixed for x in f] == ["2.0.1"]


def test_a_zip_export_alone_is_a_corpus(tmp_path: Path) -> None:
    corpus = write_corpus(tmp_path / "vulns")
    report = build_store(corpus / "npm-export.zip", tmp_path / "z.sqlite")
    assert report.advisories == 1 and not report.errors
    with pytest.raises(FeedsError, match="no such feeds folder"):
        build_store(tmp_path / "absent", tmp_path / "x.sqlite")
    (tmp_path / "plain.txt").write_text("x")
    with pytest.raises(FeedsError, match="not a folder of feeds"):
        build_store(tmp_path / "plain.txt", tmp_path / "x.sqlite")


def test_store_documents_round_trip_and_a_foreign_database_is_refused(tmp_path: Path) -> None:
    a = parse_osv(GO_RECORD, "go.json")
    assert advisory_from_doc(json.loads(json.dumps(advisory_to_doc(a)))) == a
    db = tmp_path / "other.sqlite"
    sqlite3.connect(db).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(StoreError, match="not a Vigil feed store"):
        FeedStore(sqlite3.connect(db))
    with pytest.raises(FeedsError, match="not a Vigil feed store"):
        open_store(db)


def test_the_cache_folder_comes_from_the_values_the_edge_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", "/from/the/environment")
    assert default_cache_dir("/var/cache/x", Path("/home/ana")) == Path("/var/cache/x/vigil/tvm")
    assert default_cache_dir(None, Path("/home/ana")) == Path("/home/ana/.cache/vigil/tvm")
