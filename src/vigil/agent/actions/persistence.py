"""Where Linux keeps things that start by themselves: cron, systemd units, shell profiles, authorized_keys,
ld.so.preload."""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

# Line-oriented files: a reference to a file is one line, removed (and kept for restore) on its own.
LINE_FILES = (
    "etc/crontab", "etc/cron.d/*", "var/spool/cron/crontabs/*", "var/spool/cron/*",
    "etc/profile", "etc/profile.d/*", "etc/bash.bashrc", "etc/environment", "etc/rc.local", "etc/ld.so.preload",
    "root/.bashrc", "root/.profile", "root/.bash_profile", "root/.zshrc", "home/*/.bashrc", "home/*/.profile",
    "home/*/.bash_profile", "home/*/.zshrc",
    # A key line is an entry of its own (a command="..." option may start a file).
    "root/.ssh/authorized_keys", "root/.ssh/authorized_keys2", "home/*/.ssh/authorized_keys",
    "home/*/.ssh/authorized_keys2",
)
# Whole-file entries: a unit that runs the file is moved away as a whole.
UNIT_FILES = ("etc/systemd/system/*.service", "etc/systemd/system/*.timer", "lib/systemd/system/*.service",
              "etc/systemd/user/*.service", "root/.config/systemd/user/*.service",
              "home/*/.config/systemd/user/*.service")


@dataclass(frozen=True)
class Entry:
    path: str
    line: str | None  # None: the whole file is the entry (a unit)


def _files(root: Path, patterns: tuple[str, ...]) -> list[Path]:
    out: list[Path] = []
    for pattern in patterns:
        out += [Path(p) for p in sorted(glob.glob(str(root / pattern))) if Path(p).is_file()]
    return out


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace") if path.stat().st_size <= 1 << 20 else ""
    except OSError:
        return ""


def is_entry_file(root: Path, path: Path) -> bool:
    """Whether ``path`` is one of the persistence files under ``root`` (line files and units alike)."""
    return path in _files(root, LINE_FILES + UNIT_FILES)


def entries(root: Path) -> list[Entry]:
    """Every persistence entry: non-comment lines of line files, and each unit file."""
    out = [Entry(str(p), line) for p in _files(root, LINE_FILES)
           for line in _read(p).splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return out + [Entry(str(p), None) for p in _files(root, UNIT_FILES)]


def referencing(root: Path, target: str) -> list[Entry]:
    """Entries that mention ``target`` (a file's path); units by their content."""
    found = [e for e in entries(root) if e.line is not None and target in e.line]
    return found + [Entry(str(p), None) for p in _files(root, UNIT_FILES) if target in _read(p)]


def remove_lines(path: Path, lines: list[str]) -> None:
    keep = [ln for ln in path.read_text(errors="replace").splitlines(keepends=True) if ln.rstrip("\n") not in lines]
    path.write_text("".join(keep))


def restore_lines(path: Path, lines: list[str]) -> None:
    text = path.read_text(errors="replace") if path.exists() else ""
    if text and not text.endswith("\n"):
        text += "\n"
    path.write_text(text + "".join(ln + "\n" for ln in lines))
