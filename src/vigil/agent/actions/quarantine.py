"""Stop and quarantine a file: kill what runs it, keep it in the antivirus's quarantine, remove its persistence."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
from pathlib import Path
from typing import Any

from vigil.agent.actions import persistence
from vigil.agent.actions.base import ActionContext, ActionFailed, ActionSettings, Outcome
from vigil.agent.actions.kill import kill_exact
from vigil.av.quarantine import QuarantineError, QuarantineStore
from vigil.wire import ActionCommand


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _vault(settings: ActionSettings) -> Path:
    vault = settings.quarantine_dir
    vault.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(vault, 0o700)
    return vault


def running(path: Path) -> list[int]:
    """Processes whose executable is this file (matched by device and inode, so renames do not hide it)."""
    st = path.stat()
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            exe = os.stat(f"/proc/{entry.name}/exe")
            if (exe.st_dev, exe.st_ino) == (st.st_dev, st.st_ino):
                pids.append(int(entry.name))
    return pids


def _by_hash(sha256: str) -> Path:
    """The executable of a running process with this hash (when only the hash is known)."""
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                exe = Path(os.readlink(f"/proc/{entry.name}/exe"))
                if exe.is_file() and sha256_of(exe) == sha256:
                    return exe
    raise ActionFailed(f"no running process has an executable with SHA-256 {sha256}; give the file's Path")


def quarantine(settings: ActionSettings, quarantine_id: str, path: Path | None, sha256: str | None,
               kept: frozenset[str] = frozenset()) -> dict[str, Any]:
    """``kept``: persistence files left alone (an investigation removes them by an action of their own)."""
    target = path if path is not None else _by_hash(sha256 or "")
    try:
        st = target.lstat()
    except FileNotFoundError:
        raise ActionFailed(f"{target} does not exist") from None
    if not stat.S_ISREG(st.st_mode):
        raise ActionFailed(f"{target} is not a regular file; only files are quarantined")
    digest = sha256_of(target)
    if sha256 and digest != sha256:
        raise ActionFailed(f"{target} has SHA-256 {digest}, not {sha256}; nothing was done")
    killed = []
    for pid in running(target):
        with contextlib.suppress(ActionFailed):  # it may exit by itself meanwhile; we check below
            kill_exact(pid, None)
            killed.append(pid)
    if still := running(target):
        raise ActionFailed(f"processes {still} still run {target}; it was not moved")
    vault = _vault(settings)
    found = [e for e in persistence.referencing(settings.persistence_root, str(target)) if e.path not in kept]
    removed: list[dict[str, Any]] = []
    for i, unit in enumerate(e for e in found if e.line is None):
        keep = vault / f"{quarantine_id}.unit{i}"
        shutil.move(unit.path, keep)
        os.chmod(keep, 0)
        removed.append({"path": unit.path, "file": keep.name})
    lines: dict[str, list[str]] = {}
    for e in found:
        if e.line is not None:
            lines.setdefault(e.path, []).append(e.line)
    for file, ls in lines.items():
        persistence.remove_lines(Path(file), ls)
        removed.append({"path": file, "lines": ls})
    try:
        entry = QuarantineStore(vault).add(target, entry_id=quarantine_id, extra={"killed": killed,
                                                                                  "persistence": removed})
    except QuarantineError as e:
        raise ActionFailed(str(e)) from None
    return entry.as_dict()


def restore(settings: ActionSettings, quarantine_id: str) -> dict[str, Any]:
    """Put the file back with its bytes, mode and owner (the antivirus's quarantine does it), then its persistence."""
    store = QuarantineStore(_vault(settings))
    try:
        entry = store.restore(quarantine_id)
    except QuarantineError as e:
        raise ActionFailed(str(e)) from None
    for item in entry.extra.get("persistence", []):
        if "file" in item:
            shutil.move(settings.quarantine_dir / item["file"], item["path"])
            os.chmod(item["path"], 0o644)
        else:
            persistence.restore_lines(Path(item["path"]), item["lines"])
    return entry.as_dict()


def _stop_and_quarantine(ctx: ActionContext, cmd: ActionCommand) -> Outcome:
    path = cmd.parameters.get("Path")
    meta = quarantine(ctx.settings, cmd.action_id, Path(path) if path else None, cmd.parameters.get("Sha256"),
                      frozenset(cmd.parameters.get("KeepPersistence") or ()))
    n = len(meta["persistence"])
    return Outcome(f"{meta['path']} quarantined (SHA-256 {meta['sha256']}); killed {len(meta['killed'])} process(es),"
                   f" removed {n} persistence entr{'y' if n == 1 else 'ies'}",
                   {k: meta[k] for k in ("path", "sha256", "killed", "persistence")})


def _restore(ctx: ActionContext, cmd: ActionCommand) -> Outcome:
    meta = restore(ctx.settings, str(cmd.parameters["QuarantineId"]))
    return Outcome(f"{meta['path']} restored with mode {meta['mode']:o}",
                   {"path": meta["path"], "sha256": meta["sha256"]})


HANDLERS = {"StopAndQuarantineFile": _stop_and_quarantine, "RestoreQuarantinedFile": _restore}
