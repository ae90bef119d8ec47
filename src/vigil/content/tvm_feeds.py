"""TVM feeds on disk: walking a folder of raw corpora (and zip exports), building the feed store, caching it by
the corpus's content, and packing, verifying and importing signed bundles. The schema and the parsing are the
engine's (`vigil.tvm.feedstore`, `vigil.tvm.feeds.corpus`, `vigil.tvm.bundle`); this module does the I/O.

Layout on a server's data directory::

    <data dir>/tvm/feeds.sqlite      the imported feed store
    <data dir>/tvm/manifest.json     the imported bundle's signed manifest (its version, feeds and ages)
    <data dir>/tvm/feed-signing.pub  the trusted feed-signing public key, pinned at the first import
"""

from __future__ import annotations

import hashlib
import io
import os
import sqlite3
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vigil.deploy.signing import create_key
from vigil.tvm import bundle as bundles
from vigil.tvm.feeds import FeedError
from vigil.tvm.feeds.corpus import parse_file
from vigil.tvm.feedstore import SCHEMA_VERSION, FeedBuilder, FeedStore, SourceStats, StoreError
from vigil.wire import public_key_text

# Bump when parsing changes what a store holds, so cached stores built by older code are rebuilt.
PARSER_VERSION = 1
STORE_MEMBER, MANIFEST_MEMBER, SIGNATURE_MEMBER = "feeds.sqlite", "manifest.json", "manifest.sig"
_SKIP_DIRS = {".git", "__pycache__"}

Progress = Callable[[str], None]


class FeedsError(ValueError):
    """A feeds path or bundle that cannot be used; the message says which and why."""


@dataclass(slots=True)
class BuildReport:
    files: int = 0
    advisories: int = 0
    kev: int = 0
    epss: int = 0
    seconds: float = 0.0
    errors: list[FeedError] = field(default_factory=list)
    sources: dict[str, SourceStats] = field(default_factory=dict)


def _corpus_files(root: Path) -> list[tuple[str, Path]]:
    """(path inside the corpus, file) for every file under `root`, in a stable order."""
    out: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for f in sorted(filenames):
            p = Path(dirpath) / f
            out.append((p.relative_to(root).as_posix(), p))
    return out


def _members(label: str, data: bytes) -> Iterator[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        for info in z.infolist():
            if not info.is_dir():
                yield f"{label}!{info.filename}", z.read(info)


def _source_of(rel: str, root_is_zip: bool, root: Path) -> str:
    if root_is_zip:
        return root.stem
    first = rel.split("/", 1)[0]
    if "/" in rel:
        return first
    return first.removesuffix(".zip") if first.lower().endswith(".zip") else root.name


def corpus_key(root: Path) -> str:
    """A digest of the corpus as it is: every file's path, size and mtime (and the parser and schema versions)."""
    h = hashlib.sha256(f"{PARSER_VERSION}/{SCHEMA_VERSION}/{root.resolve()}".encode())
    files = [("", root)] if root.is_file() else _corpus_files(root)
    for rel, p in files:
        st = p.stat()
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def build_store(root: Path, dest: Path, progress: Progress | None = None, every: float = 2.0) -> BuildReport:
    """Parse every file of the corpus at `root` (a folder, or one zip export) into a new store at `dest`.

    A file that cannot be read is reported in the result and skipped; the store is written to a temporary file
    and renamed into place, so a failed build leaves no half store behind."""
    if not root.exists():
        raise FeedsError(f"{root}: no such feeds folder or file")
    t0 = time.perf_counter()
    root_is_zip = root.is_file()
    if root_is_zip and not zipfile.is_zipfile(root):
        raise FeedsError(f"{root}: not a folder of feeds, a zip export or a feed bundle")
    files = [(root.name, root)] if root_is_zip else _corpus_files(root)
    report = BuildReport()
    builder = FeedBuilder()
    last = time.monotonic()
    for i, (rel, p) in enumerate(files, 1):
        try:
            data = p.read_bytes()
        except OSError as e:
            report.errors.append(FeedError(rel, None, f"cannot read: {e.strerror or e}"))
            continue
        if rel.lower().endswith(".zip") or root_is_zip:
            try:
                members = list(_members(rel, data))
            except zipfile.BadZipFile as e:
                report.errors.append(FeedError(rel, None, f"not a zip file: {e}"))
                continue
        else:
            members = [(rel, data)]
        for name, content in members:
            parsed = parse_file(name, content, _source_of(rel, root_is_zip, root))
            builder.add(_source_of(rel, root_is_zip, root), parsed)
            report.errors += parsed.errors
            report.files += parsed.kind != "skipped"
        if progress and (time.monotonic() - last >= every):
            last = time.monotonic()
            progress(f"{i:,}/{len(files):,} files read, {len(builder.advisories):,} advisories, "
                     f"{len(report.errors)} errors")
    if progress:
        progress(f"writing the store: {len(builder.advisories):,} advisories")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".feeds-", suffix=".sqlite", dir=dest.parent)
    os.close(fd)
    try:
        conn = sqlite3.connect(tmp)
        try:
            builder.write(conn, datetime.now(UTC).isoformat(timespec="seconds"))
        finally:
            conn.close()
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    report.advisories, report.kev, report.epss = len(builder.advisories), len(builder.kev), len(builder.epss)
    report.sources = builder.sources
    report.seconds = time.perf_counter() - t0
    return report


def open_store(path: Path) -> FeedStore:
    if not path.is_file():
        raise FeedsError(f"{path}: no feed store there")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    try:
        return FeedStore(conn)
    except StoreError as e:
        conn.close()
        raise FeedsError(f"{path}: {e}") from None


def default_cache_dir(xdg_cache_home: str | None, home: Path) -> Path:
    """`$XDG_CACHE_HOME/vigil/tvm`, else `~/.cache/vigil/tvm`; the edge reads the variable and the home."""
    return Path(xdg_cache_home or home / ".cache") / "vigil" / "tvm"


def cached_store(root: Path, cache_dir: Path, progress: Progress | None = None) -> tuple[Path, BuildReport | None]:
    """The store built from the corpus at `root`, reused from `cache_dir` when the corpus is unchanged
    (same files, sizes and mtimes); built otherwise (the report is None on reuse)."""
    key = corpus_key(root)
    path = cache_dir / f"feeds-{key[:32]}.sqlite"
    if path.is_file():
        return path, None
    report = build_store(root, path, progress)
    for old in cache_dir.glob("feeds-*.sqlite"):  # older builds of the same corpus are not needed again
        if old != path and old.stat().st_mtime < time.time() - 7 * 86400:
            old.unlink(missing_ok=True)
    return path, report


# --- signing keys (the same PEM PKCS8 Ed25519 files as the server's action-signing key) ---


def load_or_create_key(path: Path) -> tuple[Ed25519PrivateKey, bool]:
    """The feed-signing key at `path`, created (mode 0600) when absent; True when it was created."""
    created = False
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        create_key(path)
        created = True
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as e:
        raise FeedsError(f"{path}: not a PEM private key: {e}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise FeedsError(f"{path} is not an Ed25519 private key")
    return key, created


def public_key_argument(value: str) -> str:
    """A public key given as base64 text or as a file holding it."""
    p = Path(value)
    text = p.read_text().strip() if p.is_file() else value.strip()
    return text


# --- bundles ---


def write_bundle(store: Path, out: Path, key: Ed25519PrivateKey, sequence: int | None = None) -> bundles.Manifest:
    data = store.read_bytes()
    fs = open_store(store)
    try:
        feeds = tuple(bundles.FeedAge(s.name, s.newest, s.advisories) for s in fs.sources())
        advisories = fs.advisory_count()
    finally:
        fs.conn.close()
    now = datetime.now(UTC)
    manifest = bundles.Manifest(
        bundles.FORMAT,
        sequence if sequence is not None else int(now.timestamp()),
        now.isoformat(timespec="seconds"),
        bundles.sha256(data),
        advisories,
        feeds,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(MANIFEST_MEMBER, manifest.to_bytes())
        z.writestr(SIGNATURE_MEMBER, bundles.sign(key, manifest))
        z.writestr(STORE_MEMBER, data)
    os.replace(tmp, out)
    return manifest


def is_bundle(path: Path) -> bool:
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return MANIFEST_MEMBER in z.namelist()


def read_bundle(path: Path, public_key: str | None) -> tuple[bundles.Manifest, bytes, bool]:
    """(manifest, store bytes, whether the signature was checked). The store's digest is always checked;
    the signature when a trusted key is given."""
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            missing = {MANIFEST_MEMBER, SIGNATURE_MEMBER, STORE_MEMBER} - names
            if missing:
                raise bundles.BundleError(f"not a complete feed bundle: missing {', '.join(sorted(missing))}")
            manifest_bytes, signature, store = z.read(MANIFEST_MEMBER), z.read(SIGNATURE_MEMBER), z.read(STORE_MEMBER)
    except (zipfile.BadZipFile, OSError) as e:
        raise bundles.BundleError(f"{path}: not a readable bundle: {e}") from None
    if public_key is not None:
        manifest = bundles.verify(public_key, manifest_bytes, signature)
    else:
        manifest = bundles.Manifest.from_bytes(manifest_bytes)
    bundles.check_store(manifest, store)
    return manifest, store, public_key is not None


def tvm_dir(data_dir: Path) -> Path:
    return data_dir / "tvm"


def imported_manifest(data_dir: Path) -> bundles.Manifest | None:
    p = tvm_dir(data_dir) / "manifest.json"
    return bundles.Manifest.from_bytes(p.read_bytes()) if p.is_file() else None


@dataclass(frozen=True, slots=True)
class ImportResult:
    manifest: bundles.Manifest
    changed: bool  # False: this very bundle was imported already
    pinned_key: bool  # True: this import pinned the trusted key


def import_bundle(path: Path, data_dir: Path, public_key: str | None) -> ImportResult:
    """Verify the bundle (signature by the trusted key, store digest, newer version) and install its store."""
    d = tvm_dir(data_dir)
    pinned = d / "feed-signing.pub"
    trusted = public_key or (pinned.read_text().strip() if pinned.is_file() else None)
    if trusted is None:
        raise bundles.BundleError(
            "no trusted feed-signing key: pass --public-key (printed by `vigil tvm feed build`); it is pinned then"
        )
    if public_key and pinned.is_file() and pinned.read_text().strip() != public_key.strip():
        raise bundles.BundleError(f"--public-key differs from the key pinned in {pinned}; refusing a key change")
    manifest, store, _ = read_bundle(path, trusted)
    changed = bundles.check_newer(manifest, imported_manifest(data_dir))
    d.mkdir(parents=True, exist_ok=True)
    pin = not pinned.is_file()
    if changed:
        tmp = d / ".feeds.sqlite.tmp"
        tmp.write_bytes(store)
        try:
            FeedStore(sqlite3.connect(tmp)).conn.close()
        except StoreError as e:
            tmp.unlink()
            raise bundles.BundleError(f"the bundle's store cannot be read: {e}") from None
        os.replace(tmp, d / STORE_MEMBER)
        (d / "manifest.json").write_bytes(manifest.to_bytes())
    if pin:
        pinned.write_text(trusted.strip() + "\n")
    return ImportResult(manifest, changed, pin)


def bundle_store(path: Path, cache_dir: Path, public_key: str | None) -> tuple[Path, bundles.Manifest, bool]:
    """A bundle's store unpacked into the cache (by digest) for a standalone scan."""
    manifest, store, verified = read_bundle(path, public_key)
    dest = cache_dir / f"bundle-{manifest.store_sha256[:32]}.sqlite"
    if not dest.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".tmp")
        tmp.write_bytes(store)
        os.replace(tmp, dest)
    return dest, manifest, verified


__all__ = ["BuildReport", "FeedsError", "build_store", "cached_store", "import_bundle", "public_key_text"]
