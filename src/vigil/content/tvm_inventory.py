"""Inventories read from disk for TVM: a folder walked for Python distributions (dist-info / egg-info in any
site-packages or virtualenv), npm lockfiles and installed node_modules packages; the host's Debian release.
The readers of each format are the engine's (`vigil.tvm.inventory`)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import struct
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vigil.tvm.feeds import FeedError
from vigil.tvm.inventory import (
    RPM_QUERY_FORMAT,
    go_buildinfo_section,
    read_apk_installed,
    read_dist_metadata,
    read_dpkg_status,
    read_go_buildinfo,
    read_npm_package_json,
    read_package_lock,
    read_rpm_header,
    read_rpm_query,
    rpm_ecosystem,
    running_kernel,
)
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


def scan_path(root: Path, skip: Callable[[str], bool] | None = None,
              pace: Callable[[], None] | None = None) -> PathInventory:
    """Every Python distribution, npm lockfile and installed npm package under `root` (symlinks not followed);
    an unreadable or malformed file is reported and the walk goes on. `skip(dirpath)` prunes folders; `pace` is
    called once per folder (the agent's budget yields the CPU there)."""
    out = PathInventory()
    seen: set[tuple[str, str, str]] = set()

    def add(pkg: Package | None) -> None:
        if pkg is not None and (pkg.ecosystem, pkg.name, pkg.version) not in seen:
            seen.add((pkg.ecosystem, pkg.name, pkg.version))
            out.packages.append(pkg)

    for dirpath, dirnames, filenames in os.walk(root):
        if pace is not None:
            pace()
        d = Path(dirpath)
        dirnames[:] = sorted(x for x in dirnames if (x not in _SKIP or d != root)
                             and (skip is None or not skip(os.path.join(dirpath, x))))
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


@dataclass(frozen=True, slots=True)
class HostSources:
    """Where a host's software is read from; the agent's settings fill it, tests point it at fixture trees."""

    dpkg_status: Path = Path("/var/lib/dpkg/status")
    apk_installed: Path = Path("/lib/apk/db/installed")
    rpm_dir: Path = Path("/var/lib/rpm")  # rpmdb.sqlite is read directly; an older database through `rpm -qa`
    os_release: Path = Path("/etc/os-release")
    alpine_release: Path = Path("/etc/alpine-release")
    # Walked for Python distributions (site-packages, virtualenvs), package-lock.json and node_modules.
    roots: tuple[Path, ...] = (Path("/usr/local/lib"), Path("/opt"), Path("/srv"), Path("/home"), Path("/root"))
    # Folders pruned from the walk: Debian's own Python modules are dpkg packages, matched on their source
    # package with Debian's back-ported fixes; matched again as PyPI releases they would be false positives.
    exclude: tuple[str, ...] = ("/usr/lib/python3/dist-packages", "/usr/share/nodejs", "/proc", "/sys", "/dev")
    # Folders whose executables are read for Go build info (not recursive).
    go_dirs: tuple[Path, ...] = (Path("/usr/local/bin"), Path("/usr/local/sbin"), Path("/usr/bin"), Path("/usr/sbin"),
                                 Path("/opt/bin"))
    kernel: tuple[str, str] | None = None  # (uname -r, uname -v); None reads os.uname()
    max_go_binary_bytes: int = 1 << 30


@dataclass(slots=True)
class HostInventory:
    packages: list[Package] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    watched: dict[str, tuple[int, int]] = field(default_factory=dict)  # path -> (mtime_ns, size): changes rescan


def _os_release(path: Path) -> dict[str, str]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    return {k: v.strip().strip('"') for k, _, v in (ln.partition("=") for ln in lines) if v}


def watch_stamp(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def collect_host(src: HostSources, pace: Callable[[], None] | None = None) -> HostInventory:
    """The host's software: dpkg (binary and source package), apk, Python distributions and npm packages under
    the roots, Go binaries' build info, the running kernel. Each source that fails is reported and skipped.
    `watched` lists the package databases and folders whose change means the inventory changed."""
    out = HostInventory()
    release = _os_release(src.os_release)
    debian = release.get("VERSION_ID", "").split(".", 1)[0] if release.get("ID") == "debian" else ""
    distro = f"Debian:{debian}" if debian else None

    def watch(p: Path) -> None:
        stamp = watch_stamp(str(p))
        if stamp is not None:
            out.watched[str(p)] = stamp

    if src.dpkg_status.is_file():
        watch(src.dpkg_status)
        text = _read(src.dpkg_status, [])
        if text is not None and debian:
            try:
                out.packages += read_dpkg_status(text, str(src.dpkg_status), debian)
            except FeedError as e:
                out.errors.append(str(e))
        elif text is not None:
            out.errors.append(f"{src.dpkg_status}: dpkg packages not reported: {src.os_release} names no Debian "
                              "release")
    if src.apk_installed.is_file():
        watch(src.apk_installed)
        text = _read(src.apk_installed, [])
        try:
            alpine = ".".join(src.alpine_release.read_text().strip().split(".")[:2])
        except OSError:
            alpine = ""
        if text is not None and alpine:
            try:
                out.packages += read_apk_installed(text, str(src.apk_installed), alpine)
            except FeedError as e:
                out.errors.append(str(e))
    if src.rpm_dir.is_dir():
        ecosystem = rpm_ecosystem(release.get("ID", ""), release.get("VERSION_ID", ""))
        found = read_rpm_database(src.rpm_dir, ecosystem or "")
        if found.packages or found.errors:
            watch(src.rpm_dir / "rpmdb.sqlite" if (src.rpm_dir / "rpmdb.sqlite").is_file() else src.rpm_dir)
        if found.packages and not ecosystem:
            out.errors.append(f"{src.rpm_dir}: rpm packages not reported: {src.os_release} names no AlmaLinux or "
                              "Rocky Linux release")
        else:
            out.packages += found.packages
        out.errors += [str(e) for e in found.errors]
    excluded = tuple(e.rstrip("/") for e in src.exclude)

    def skip(path: str) -> bool:
        return any(path == e or path.startswith(e + "/") for e in excluded)

    for root in src.roots:
        if not root.is_dir() or skip(str(root)):
            continue
        found = scan_path(root, skip, pace)
        out.packages += found.packages
        out.errors += [str(e) for e in found.errors]
        watch(root)
        for dirpath, dirnames, _ in os.walk(root):  # site-packages and node_modules change when one installs
            dirnames[:] = [d for d in dirnames if not skip(os.path.join(dirpath, d))]
            for name in list(dirnames):
                if name in ("site-packages", "dist-packages", "node_modules"):
                    watch(Path(dirpath) / name)
                    dirnames.remove(name)
    for folder in src.go_dirs:
        if folder.is_dir():
            watch(folder)
            _go_binaries(folder, src.max_go_binary_bytes, out, pace)
    try:
        r, v = src.kernel or (os.uname().release, os.uname().version)
        out.packages.append(running_kernel(r, v, distro))
    except OSError as e:
        out.errors.append(f"running kernel: {e}")
    return out


def _go_binaries(folder: Path, max_bytes: int, out: HostInventory, pace: Callable[[], None] | None) -> None:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as e:
        out.errors.append(f"{folder}: cannot list: {e.strerror or e}")
        return
    for entry in entries:
        if pace is not None:
            pace()
        try:
            if not entry.is_file(follow_symlinks=False) or entry.stat().st_size > max_bytes:
                continue
        except OSError as e:
            out.errors.append(f"{entry.path}: cannot read: {e.strerror or e}")
            continue
        _go_file(Path(entry.path), out)


def _go_file(path: Path, out: HostInventory) -> None:
    try:
        with open(path, "rb") as f:
            head = f.read(64)

            def read_at(offset: int, size: int, f: Any = f) -> bytes:
                f.seek(offset)
                data: bytes = f.read(size)
                return data

            section = go_buildinfo_section(head, read_at)
        if section is not None:
            out.packages += read_go_buildinfo(section, str(path)).packages()
    except FeedError as e:
        out.errors.append(str(e))
    except (OSError, struct.error) as e:
        out.errors.append(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}")


def read_rpm_database(rpm_dir: Path, ecosystem: str, rpm_binary: str | None = None) -> PathInventory:
    """Installed RPMs: the header blobs of `<rpm_dir>/rpmdb.sqlite` (rpm 4.16+, EL9 and later), read-only and
    without rpm; else, when `<rpm_dir>/Packages` (Berkeley DB, EL8) or `Packages.db` (ndb) is there, what
    `rpm -qa --dbpath <rpm_dir>` prints, if an rpm binary is installed. A folder with neither gives nothing."""
    out = PathInventory()
    db = rpm_dir / "rpmdb.sqlite"
    if db.is_file():
        try:
            conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
            try:
                rows = conn.execute("SELECT hnum, blob FROM Packages ORDER BY hnum").fetchall()
            finally:
                conn.close()
        except sqlite3.Error as e:
            out.errors.append(FeedError(str(db), None, f"cannot read the rpm database: {e}"))
            return out
        for hnum, blob in rows:
            try:
                pkg = read_rpm_header(bytes(blob), f"{db}#{hnum}", ecosystem)
            except FeedError as e:
                out.errors.append(e)
                continue
            if pkg is not None:
                out.packages.append(pkg)
        return out
    if not ((rpm_dir / "Packages").is_file() or (rpm_dir / "Packages.db").is_file()):
        return out
    binary = rpm_binary or shutil.which("rpm")
    if binary is None:
        out.errors.append(FeedError(str(rpm_dir), None, "an rpm database other than SQLite and no rpm binary to "
                                    "read it"))
        return out
    try:
        done = subprocess.run([binary, "-qa", "--dbpath", str(rpm_dir), "--qf", RPM_QUERY_FORMAT],
                              capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        out.errors.append(FeedError(binary, None, f"rpm -qa failed: {e}"))
        return out
    if done.returncode != 0:
        out.errors.append(FeedError(binary, None, f"rpm -qa exited {done.returncode}: {done.stderr.strip()[:200]}"))
        return out
    try:
        out.packages += read_rpm_query(done.stdout, f"{binary} -qa", ecosystem)
    except FeedError as e:
        out.errors.append(e)
    return out


def read_go_binaries(path: Path) -> HostInventory:
    """Go build info of one executable, or of every executable in a folder (not recursive); files that are not
    Go binaries give nothing, unreadable ones are reported."""
    out = HostInventory()
    if path.is_dir():
        _go_binaries(path, 1 << 30, out, None)
    else:
        _go_file(path, out)
    return out
