"""On-demand scans: quick (persistence, temp folders, running programs), full (local file systems), custom paths."""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from vigil.av.engine import Engine
from vigil.av.exclusions import Exclusions
from vigil.av.model import Detection


class ScanType(StrEnum):
    QUICK = "quick"
    FULL = "full"
    CUSTOM = "custom"


# Where things start themselves on Linux, and where droppers land.
QUICK_PATHS = (
    "/etc/crontab", "/etc/cron.d", "/etc/cron.hourly", "/etc/cron.daily", "/etc/cron.weekly", "/etc/cron.monthly",
    "/var/spool/cron", "/etc/systemd/system", "/run/systemd/system", "/etc/init.d", "/etc/rc.local",
    "/etc/profile", "/etc/profile.d", "/etc/bash.bashrc", "/etc/ld.so.preload", "/etc/xdg/autostart",
    "/etc/update-motd.d", "/root/.bashrc", "/root/.profile", "/root/.ssh", "/root/.config/autostart",
    "/root/.config/systemd/user", "/tmp", "/var/tmp", "/dev/shm",  # noqa: S108 (scanned, not written)
)
_HOME_ITEMS = (".bashrc", ".profile", ".bash_profile", ".zshrc", ".ssh", ".config/autostart", ".config/systemd/user",
               ".local/bin")
# File systems a full scan does not enter: kernel views, and remote or removable ones that are not this host's.
PSEUDO_FS = frozenset({"proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "debugfs", "tracefs", "securityfs",
                       "pstore", "bpf", "fusectl", "configfs", "mqueue", "hugetlbfs", "autofs", "binfmt_misc",
                       "efivarfs", "rpc_pipefs", "nsfs", "nfs", "nfs4", "cifs", "smb3", "fuse.sshfs", "9p",
                       "ramfs", "squashfs"})


@dataclass
class Progress:
    files: int = 0
    bytes: int = 0
    current: str = ""
    cached: int = 0
    errors: int = 0


@dataclass
class ScanReport:
    scan_type: ScanType
    paths: list[str]
    definitions_version: int
    started: datetime
    finished: datetime | None = None
    files: int = 0
    bytes: int = 0
    cached: int = 0
    detections: list[Detection] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return ((self.finished or self.started) - self.started).total_seconds()

    def as_dict(self) -> dict[str, object]:
        return {"scan_type": str(self.scan_type), "paths": self.paths,
                "definitions_version": self.definitions_version, "started": self.started.isoformat(),
                "finished": self.finished.isoformat() if self.finished else None, "seconds": round(self.seconds, 3),
                "files": self.files, "bytes": self.bytes, "cached": self.cached,
                "threats": len(self.detections), "detections": [d.as_dict() for d in self.detections],
                "incomplete": self.incomplete, "errors": self.errors[:1000], "error_count": len(self.errors)}


def quick_paths(proc: Path = Path("/proc"), home: Path = Path("/home")) -> list[str]:
    """The quick scan's targets: persistence and temp locations that exist, and running processes' executables."""
    out = [p for p in QUICK_PATHS if os.path.lexists(p)]
    with contextlib.suppress(OSError):
        for user in sorted(home.iterdir()):
            out.extend(str(user / item) for item in _HOME_ITEMS if (user / item).exists())
    out.extend(running_executables(proc))
    return out


def running_executables(proc: Path = Path("/proc")) -> list[str]:
    """Each running program's file once (by device and inode); /proc/PID/exe stands for a deleted one."""
    seen: set[tuple[int, int]] = set()
    out: list[str] = []
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            link = f"{entry.path}/exe"
            st = os.stat(link)
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            target = os.readlink(link)
            out.append(target if os.path.exists(target) and not target.endswith(" (deleted)") else link)
    return out


def full_paths() -> list[str]:
    return ["/"]


def _skipped_mounts(mounts: Path = Path("/proc/self/mounts")) -> set[str]:
    skipped = set()
    with contextlib.suppress(OSError):
        for line in mounts.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[2] in PSEUDO_FS:
                skipped.add(parts[1].replace("\\040", " "))
    return skipped


def walk(paths: Iterable[str], excluded: Iterable[str] = (), skip_pseudo: bool = True,
         errors: list[str] | None = None) -> Iterator[str]:
    """Regular files under ``paths`` (files given directly included), without following symbolic links."""
    skip = (_skipped_mounts() if skip_pseudo else set()) | {os.path.abspath(e) for e in excluded}
    seen_dirs: set[tuple[int, int]] = set()
    for top in paths:
        top = os.path.abspath(top) if not top.startswith("/proc/") else top
        try:
            st = os.stat(top) if top.startswith("/proc/") else os.lstat(top)
        except OSError as e:
            if errors is not None:
                errors.append(f"{top}: {e.strerror or e}")
            continue
        if stat.S_ISREG(st.st_mode):
            yield top
            continue
        if not stat.S_ISDIR(st.st_mode):
            continue
        stack = [top]
        while stack:
            d = stack.pop()
            if d in skip:
                continue
            try:
                dst = os.lstat(d)
                if (dst.st_dev, dst.st_ino) in seen_dirs:
                    continue
                seen_dirs.add((dst.st_dev, dst.st_ino))
                with os.scandir(d) as it:
                    entries = list(it)
            except OSError as e:
                if errors is not None:
                    errors.append(f"{d}: {e.strerror or e}")
                continue
            subdirs = []
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        subdirs.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        yield entry.path
                except OSError:
                    continue
            stack.extend(reversed(sorted(subdirs)))


ProgressCallback = Callable[[Progress], None]


def run_scan(engine: Engine, scan_type: ScanType, paths: list[str], *, excluded: Iterable[str] = (),
             exclusions: Exclusions | None = None, workers: int | None = None,
             on_progress: ProgressCallback | None = None, progress_interval: float = 1.0,
             stop: threading.Event | None = None) -> ScanReport:
    """Scan with ``workers`` threads (default: the CPU count); ``on_progress`` is called every interval.
    ``excluded``: paths not entered (the agent's own state); ``exclusions``: the policy's (files skipped)."""
    report = ScanReport(scan_type, paths, engine.definitions.version, datetime.now(UTC))
    progress = Progress()
    lock = threading.Lock()
    walk_errors: list[str] = []
    files = walk(paths, excluded, errors=walk_errors)
    if exclusions:
        files = (f for f in files if not exclusions.file(f))

    def next_file() -> str | None:
        with lock:
            if stop is not None and stop.is_set():
                return None
            return next(files, None)

    def work() -> None:
        while (path := next_file()) is not None:
            try:
                verdict, size = engine.scan_file(path)
            except OSError as e:
                with lock:
                    report.errors.append(f"{path}: {e.strerror or e}")
                    progress.errors += 1
                continue
            with lock:
                progress.files += 1
                progress.bytes += size
                progress.current = path
                progress.cached += verdict.cached
                report.detections.extend(verdict.detections)
                report.incomplete.extend(verdict.incomplete)

    threads = [threading.Thread(target=work, name=f"av-scan-{i}", daemon=True)
               for i in range(max(1, workers or os.cpu_count() or 1))]
    for t in threads:
        t.start()
    last = time.monotonic()
    for t in threads:
        while t.is_alive():
            t.join(timeout=min(progress_interval, 0.25))
            if on_progress is not None and time.monotonic() - last >= progress_interval:
                last = time.monotonic()
                with lock:
                    snapshot = Progress(progress.files, progress.bytes, progress.current, progress.cached,
                                        progress.errors)
                on_progress(snapshot)
    report.errors = walk_errors + report.errors
    report.files, report.bytes, report.cached = progress.files, progress.bytes, progress.cached
    report.detections.sort(key=lambda d: (d.path, d.member or "", d.threat.name))
    report.finished = datetime.now(UTC)
    return report


def paths_for(scan_type: ScanType, custom: list[str] | None = None) -> list[str]:
    if scan_type is ScanType.QUICK:
        return quick_paths()
    if scan_type is ScanType.FULL:
        return full_paths()
    if not custom:
        raise ValueError("a custom scan needs at least one path")
    return custom


_IOPRIO_SET = {"x86_64": 251, "aarch64": 30, "i686": 289, "armv7l": 314}
_IOPRIO_CLASS_IDLE = 3


def be_polite(niceness: int = 10) -> list[str]:
    """Lower this process's CPU priority (nice) and I/O class (idle), so a scan never starves the machine.
    Returns what it could not do (neither is an error: a scan still runs)."""
    problems = []
    try:
        current = os.nice(0)
        if current < niceness:
            os.nice(niceness - current)
    except OSError as e:
        problems.append(f"nice: {e}")
    number = _IOPRIO_SET.get(platform.machine())
    if number is None:
        problems.append(f"ionice: ioprio_set unknown on {platform.machine()}")
    else:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syscall(number, 1, 0, _IOPRIO_CLASS_IDLE << 13) != 0:  # IOPRIO_WHO_PROCESS, this process
            problems.append(f"ionice: {os.strerror(ctypes.get_errno())}")
    return problems
