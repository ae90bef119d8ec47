"""`vigil tvm scan`: the standalone vulnerability scanner (no server, no enrolment); `vigil tvm feed build|import|
status`: signed feed bundles for air-gapped servers.

Exit codes of `scan`: 0 no finding, 1 findings, 2 bad input (a missing or unreadable file, a bad feeds path or
bundle). `feed import`: 0 imported (or already there), 2 refused (signature, tampering, older version).
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vigil.commands._common import CommandError, audit_server_change
from vigil.config import data_dir_from_env
from vigil.content import tvm_feeds
from vigil.content.tvm_config import RootView
from vigil.content.tvm_inventory import debian_release, read_go_binaries, read_rpm_database, scan_path
from vigil.tvm import bundle as bundles
from vigil.tvm import configuration as config_checks
from vigil.tvm.feeds import FeedError
from vigil.tvm.feedstore import FeedStore, ScanFinding
from vigil.tvm.inventory import (
    read_apk_installed,
    read_dpkg_status,
    read_package_lock,
    read_requirements,
    rpm_ecosystem,
)
from vigil.tvm.model import Package

app = typer.Typer(help="Threat and vulnerability management: scan inventories, build and import feeds.",
                  no_args_is_help=True)
feed_app = typer.Typer(help="Signed feed bundles: build one from raw corpora, import it, show feed ages.",
                       no_args_is_help=True)
app.add_typer(feed_app, name="feed")

Feeds = Annotated[str, typer.Option("--feeds", help="A folder of raw corpora (OSV JSON/YAML, Debian DSA/DLA lists, "
                                    "KEV, EPSS; zip exports too), one zip export, a signed bundle, or a feed store")]
CacheDir = Annotated[Path | None, typer.Option("--cache-dir", help="Where stores built from raw folders are kept "
                                               "(default $XDG_CACHE_HOME/vigil/tvm)")]
PublicKey = Annotated[str | None, typer.Option("--public-key", help="The feed-signing public key (base64, or a "
                                               "file holding it) a bundle must be signed by")]
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Vigil's data directory (default $VIGIL_DATA_DIR "
                                              "or /var/lib/vigil); its feeds are in <data dir>/tvm")]
MaxAge = Annotated[int, typer.Option("--max-age-days", help="Warn when a feed's newest entry is older than this")]

_err = Console(stderr=True, highlight=False, soft_wrap=True)


def _say(message: str) -> None:
    _err.print(escape(message))


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise CommandError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise CommandError(f"{what} {path}: is a folder, not a file") from None
    except OSError as e:
        raise CommandError(f"{what} {path}: cannot read: {e.strerror or e}") from None


def _store_for(feeds: str, cache_dir: Path | None, public_key: str | None) -> FeedStore:
    path = Path(feeds)
    cache = cache_dir or tvm_feeds.default_cache_dir(os.environ.get("XDG_CACHE_HOME"), Path.home())
    if not path.exists():
        raise CommandError(f"--feeds {path}: no such folder or file")
    try:
        if path.is_file() and path.read_bytes()[:16] == b"SQLite format 3\x00":
            return tvm_feeds.open_store(path)
        if tvm_feeds.is_bundle(path):
            key = tvm_feeds.public_key_argument(public_key) if public_key else None
            store_path, manifest, verified = tvm_feeds.bundle_store(path, cache, key)
            if not verified:
                _say(f"vigil: warning: bundle {path.name} integrity checked, signature NOT checked "
                     "(pass --public-key to verify who built it)")
            _warn_stale(manifest, bundles.STALE_AFTER_DAYS)
            return tvm_feeds.open_store(store_path)
        store_path, report = tvm_feeds.cached_store(path, cache, progress=lambda m: _say(f"tvm: {m}"))
        if report is not None:
            _say(f"tvm: built the feed store from {path} in {report.seconds:.1f} s: {report.advisories:,} advisories, "
                 f"{report.kev:,} KEV, {report.epss:,} EPSS entries, {len(report.errors)} files with errors")
            for e in report.errors[:20]:
                _say(f"tvm: feed error: {e}")
            if len(report.errors) > 20:
                _say(f"tvm: ... and {len(report.errors) - 20} more feed errors")
        return tvm_feeds.open_store(store_path)
    except (tvm_feeds.FeedsError, bundles.BundleError) as e:
        raise CommandError(f"--feeds {path}: {e}") from None


def _host_release(path: Path = Path("/etc/os-release")) -> dict[str, str]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    return {k: v.strip().strip('"') for k, _, v in (ln.partition("=") for ln in lines) if v}


def _rpm_packages(rpmdb: Path, ecosystem: str | None) -> list[Package]:
    if ecosystem is None:
        host = _host_release()
        ecosystem = rpm_ecosystem(host.get("ID", ""), host.get("VERSION_ID", ""))
        if ecosystem is None:
            raise CommandError("--rpmdb: this host is not AlmaLinux or Rocky Linux; pass --rpm-ecosystem "
                               "(e.g. AlmaLinux:9)")
    family, _, release = ecosystem.partition(":")
    if family not in ("AlmaLinux", "Rocky Linux") or not release.isdigit():
        raise CommandError(f"--rpm-ecosystem {ecosystem!r}: expected AlmaLinux:<major> or 'Rocky Linux:<major>'")
    folder = rpmdb.parent if rpmdb.name == "rpmdb.sqlite" else rpmdb
    if not folder.is_dir():
        raise CommandError(f"--rpmdb {rpmdb}: no such folder (give /var/lib/rpm or its rpmdb.sqlite)")
    found = read_rpm_database(folder, ecosystem)
    if found.errors and not found.packages:
        raise CommandError(f"--rpmdb {rpmdb}: {found.errors[0]}")
    for problem in found.errors:
        _say(f"tvm: inventory error: {problem}")
    if not found.packages:
        raise CommandError(f"--rpmdb {rpmdb}: no rpmdb.sqlite, Packages or Packages.db in it")
    return found.packages


def _inventory(dpkg_status: Path | None, requirements: list[Path], lockfile: list[Path], paths: list[Path],
               debian: str | None, rpmdb: Path | None = None, rpm_eco: str | None = None,
               apk_installed: Path | None = None, alpine: str | None = None,
               go_binaries: tuple[Path, ...] = ()) -> list[Package]:
    packages: list[Package] = []
    if rpmdb is not None:
        packages += _rpm_packages(rpmdb, rpm_eco)
    for g in go_binaries:
        if not g.exists():
            raise CommandError(f"--go-binary {g}: no such file or folder")
        got = read_go_binaries(g)
        for message in got.errors:
            _say(f"tvm: inventory error: {message}")
        if not got.packages and g.is_file():
            raise CommandError(f"--go-binary {g}: not a Go 1.18+ binary (no build info)")
        packages += got.packages
    try:
        if apk_installed is not None:
            if alpine is None:
                try:
                    alpine = Path("/etc/alpine-release").read_text().strip()
                except OSError:
                    raise CommandError("--apk-installed: this host is not Alpine; pass --alpine-release "
                                       "(e.g. 3.19)") from None
            packages += read_apk_installed(_read_text(apk_installed, "--apk-installed"), str(apk_installed),
                                           ".".join(alpine.split(".")[:2]))
        if dpkg_status is not None:
            release = debian or debian_release()
            if not release:
                raise CommandError("--dpkg-status: this host is not Debian; pass --debian-release (e.g. 12)")
            packages += read_dpkg_status(_read_text(dpkg_status, "--dpkg-status"), str(dpkg_status),
                                         release.split(".", 1)[0])
        for r in requirements:
            packages += read_requirements(_read_text(r, "--requirements"), str(r))
        for lf in lockfile:
            if lf.name != "package-lock.json" and not lf.name.endswith(".package-lock.json"):
                raise CommandError(f"--lockfile {lf}: unsupported lockfile (supported: npm package-lock.json)")
            packages += read_package_lock(_read_text(lf, "--lockfile"), str(lf))
    except FeedError as e:
        raise CommandError(str(e)) from None
    for p in paths:
        if not p.is_dir():
            raise CommandError(f"--path {p}: not a folder")
        found = scan_path(p)
        for problem in found.errors:
            _say(f"tvm: inventory error: {problem}")
        packages += found.packages
    return packages


def _table(findings: list[ScanFinding]) -> None:
    out = Console(highlight=False, soft_wrap=False, width=200)
    t = Table("package", "ecosystem", "installed", "advisory", "CVEs", "fixed", "severity", "KEV", "EPSS",
              box=None, pad_edge=False)
    for f in findings:
        t.add_row(escape(f.package), f.ecosystem, escape(f.installed), f.advisory, " ".join(f.aliases) or "-",
                  escape(f.fixed or "-"), f.severity or "-", "yes" if f.kev else "", f"{f.epss:.3f}" if f.epss else "")
    out.print(t)


@app.command()
def scan(
    feeds: Feeds,
    dpkg_status: Annotated[Path | None, typer.Option("--dpkg-status", help="A dpkg status file "
                                                     "(/var/lib/dpkg/status)")] = None,
    requirements: Annotated[list[Path] | None, typer.Option("--requirements", help="A requirements file of "
                                                            "pinned name==version lines (repeatable)")] = None,
    lockfile: Annotated[list[Path] | None, typer.Option("--lockfile", help="An npm package-lock.json "
                                                        "(repeatable)")] = None,
    path: Annotated[list[Path] | None, typer.Option("--path", help="A folder walked for Python dist-info/egg-info, "
                                                    "package-lock.json and node_modules (repeatable)")] = None,
    output: Annotated[Literal["table", "json"], typer.Option("--output", "-o", help="table or json")] = "table",
    debian_release_: Annotated[str | None, typer.Option("--debian-release", help="The Debian release the dpkg "
                                                        "status file is from (default: this host's)")] = None,
    rpmdb: Annotated[Path | None, typer.Option("--rpmdb", help="An rpm database folder (/var/lib/rpm) or its "
                                               "rpmdb.sqlite; older databases are read through rpm -qa")] = None,
    rpm_ecosystem_: Annotated[str | None, typer.Option("--rpm-ecosystem", help="The distribution the rpm database "
                                                       "is from, as OSV names it (AlmaLinux:9; default: this "
                                                       "host's)")] = None,
    apk_installed: Annotated[Path | None, typer.Option("--apk-installed", help="Alpine's package database "
                                                       "(/lib/apk/db/installed)")] = None,
    alpine_release: Annotated[str | None, typer.Option("--alpine-release", help="The Alpine release it is from "
                                                       "(default: this host's)")] = None,
    go_binary: Annotated[list[Path] | None, typer.Option("--go-binary", help="A Go executable, or a folder of "
                                                         "them, whose build info is read (repeatable)")] = None,
    cache_dir: CacheDir = None,
    public_key: PublicKey = None,
) -> None:
    """Scan an inventory against offline feeds. Exit 0: no finding, 1: findings, 2: bad input."""
    if (dpkg_status is None and not requirements and not lockfile and not path and rpmdb is None
            and apk_installed is None and not go_binary):
        raise CommandError("nothing to scan: give --dpkg-status, --rpmdb, --apk-installed, --requirements, "
                           "--lockfile, --go-binary or --path")
    packages = _inventory(dpkg_status, requirements or [], lockfile or [], path or [], debian_release_, rpmdb,
                          rpm_ecosystem_, apk_installed, alpine_release, tuple(go_binary or ()))
    store = _store_for(feeds, cache_dir, public_key)
    problems: list[str] = []
    findings = store.scan(packages, problems)
    for p in problems[:20]:
        _say(f"tvm: not compared: {p}")
    if len(problems) > 20:
        _say(f"tvm: ... and {len(problems) - 20} more comparisons skipped")
    if output == "json":
        sys.stdout.write(json.dumps([f.to_json() for f in findings], indent=2) + "\n")
    else:
        _table(findings)
    _say(f"tvm: {len(packages):,} packages, {store.advisory_count():,} advisories loaded, "
         f"{len(findings):,} findings ({len({f.advisory for f in findings}):,} advisories)")
    if findings:
        raise typer.Exit(1)


@app.command("configuration")
def configuration(
    root: Annotated[Path, typer.Option("--root", help="The root folder of the system to assess (default /); /proc "
                                       "is the live one unless the root has its own")] = Path("/"),
    output: Annotated[Literal["table", "json"], typer.Option("--output", "-o", help="table or json")] = "table",
) -> None:
    """Secure configuration assessment: the CIS-style Linux checks, their evidence and fixes, and the secure score."""
    if not root.is_dir():
        raise CommandError(f"--root {root}: not a folder")
    results = config_checks.assess(RootView(root))
    score = config_checks.secure_score(results)
    if output == "json":
        sys.stdout.write(json.dumps({"secureScore": score, "assessments": [a.to_json() for a in results]},
                                    indent=2) + "\n")
    else:
        out = Console(highlight=False, soft_wrap=False, width=200)
        t = Table("ConfigurationId", "state", "impact", "name", "evidence", box=None, pad_edge=False)
        for a in results:
            state = "n/a" if a.result.compliant is None else "pass" if a.result.compliant else "FAIL"
            t.add_row(a.check.id, state, str(a.check.impact), escape(a.check.name), escape(a.result.evidence))
        out.print(t)
    failing = [a for a in results if a.result.compliant is False]
    _say(f"tvm: secure score {score:g} / 100: {len(failing)} of "
         f"{sum(a.result.compliant is not None for a in results)} applicable checks not compliant")


@feed_app.command("build")
def feed_build(
    feeds: Feeds,
    output: Annotated[Path, typer.Option("--output", "-o", help="The bundle file to write")],
    key: Annotated[Path, typer.Option("--key", help="The Ed25519 feed-signing key (PEM); created when absent")],
    sequence: Annotated[int | None, typer.Option("--sequence", help="The bundle's version (default: the Unix time); "
                                                 "imports refuse one not newer than theirs")] = None,
    cache_dir: CacheDir = None,
) -> None:
    """Build a versioned, Ed25519-signed feed bundle from raw corpora (or a feed store)."""
    src = Path(feeds)
    if tvm_feeds.is_bundle(src):
        raise CommandError(f"--feeds {src}: already a bundle; give the raw corpora to build from")
    try:
        signing_key, created = tvm_feeds.load_or_create_key(key)
    except tvm_feeds.FeedsError as e:
        raise CommandError(f"--key: {e}") from None
    store = _store_for(feeds, cache_dir, None)
    store_path = Path(store.conn.execute("PRAGMA database_list").fetchone()[2])
    store.conn.close()
    manifest = tvm_feeds.write_bundle(store_path, output, signing_key, sequence)
    if created:
        _say(f"tvm: created the feed-signing key {key} (keep it private)")
    _say(f"tvm: wrote {output}: version {manifest.sequence}, {manifest.advisories:,} advisories")
    _print_ages(manifest, bundles.STALE_AFTER_DAYS)
    typer.echo(f"public key: {tvm_feeds.public_key_text(signing_key)}")


@feed_app.command("import")
def feed_import(
    bundle: Annotated[Path, typer.Argument(help="A bundle made by `vigil tvm feed build`")],
    public_key: PublicKey = None,
    data_dir: DataDir = None,
    max_age_days: MaxAge = bundles.STALE_AFTER_DAYS,
) -> None:
    """Verify a bundle (trusted signature, intact store, newer version) and install it on this server."""
    if not bundle.is_file():
        raise CommandError(f"{bundle}: no such bundle file")
    d = data_dir_from_env(data_dir)
    key = tvm_feeds.public_key_argument(public_key) if public_key else None
    try:
        result = tvm_feeds.import_bundle(bundle, d, key)
    except bundles.BundleError as e:
        raise CommandError(f"refused {bundle}: {e}") from None
    if result.pinned_key:
        _say(f"tvm: pinned the feed-signing key in {tvm_feeds.tvm_dir(d) / 'feed-signing.pub'}")
    m = result.manifest
    if result.changed:
        audit_server_change(d, "tvm.feed_import", "tvm_feed", str(m.sequence), {
            "bundle": str(bundle), "builtAt": m.created_at, "advisories": m.advisories,
            "pinnedKey": result.pinned_key})
    verb = "imported" if result.changed else "already imported"
    _say(f"tvm: {verb} feed bundle version {m.sequence} (built {m.created_at}): {m.advisories:,} advisories")
    _print_ages(m, max_age_days)


@feed_app.command("status")
def feed_status(data_dir: DataDir = None, max_age_days: MaxAge = bundles.STALE_AFTER_DAYS) -> None:
    """The imported bundle's version and each feed's age; a warning for stale feeds (exit 1 if any)."""
    d = data_dir_from_env(data_dir)
    try:
        m = tvm_feeds.imported_manifest(d)
    except bundles.BundleError as e:
        raise CommandError(f"{tvm_feeds.tvm_dir(d)}: {e}") from None
    if m is None:
        raise CommandError(f"no feed bundle imported in {tvm_feeds.tvm_dir(d)}; run `vigil tvm feed import`", 3)
    _say(f"tvm: feed bundle version {m.sequence} (built {m.created_at}): {m.advisories:,} advisories")
    if _print_ages(m, max_age_days):
        raise typer.Exit(1)


def _print_ages(m: bundles.Manifest, max_age_days: int) -> bool:
    today = datetime.now(UTC).date()
    for f in m.feeds:
        age = bundles.age_days(f.newest, today)
        _say(f"  {f.name}: {f.advisories:,} advisories, newest entry {f.newest or 'undated'}"
             + (f", {age} days old" if age is not None else ""))
    return _warn_stale(m, max_age_days)


def _warn_stale(m: bundles.Manifest, max_age_days: int) -> bool:
    stale = bundles.stale_feeds(m, datetime.now(UTC), max_age_days)
    for name, age in stale:
        _say(f"vigil: warning: feed {name} is stale: its newest entry is {age} days old (over {max_age_days})")
    return bool(stale)
