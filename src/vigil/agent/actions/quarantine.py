"""Stop and quarantine a file: kill what runs it, move it to a root-only vault, remove its persistence; restore."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

from vigil.agent.actions import persistence
from vigil.agent.actions.base import ActionContext, ActionFailed, ActionSettings, Outcome
from vigil.agent.actions.kill import kill_exact
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


def quarantine(settings: ActionSettings, quarantine_id: str, path: Path | None, sha256: str | None
               ) -> dict[str, Any]:
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
    found = persistence.referencing(settings.persistence_root, str(target))
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
    stored = vault / quarantine_id
    shutil.move(str(target), stored)  # a rename on one filesystem, copy-and-delete across
    os.chmod(stored, 0)
    meta = {"id": quarantine_id, "path": str(target), "sha256": digest, "mode": stat.S_IMODE(st.st_mode),
            "uid": st.st_uid, "gid": st.st_gid, "size": st.st_size, "killed": killed, "persistence": removed}
    meta_path = vault / f"{quarantine_id}.json"
    fd = os.open(meta_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(meta, f, indent=2)
    return meta


def restore(settings: ActionSettings, quarantine_id: str) -> dict[str, Any]:
    if not quarantine_id.replace("-", "").isalnum():
        raise ActionFailed(f"{quarantine_id!r} is not a quarantine id")
    vault = _vault(settings)
    try:
        meta: dict[str, Any] = json.loads((vault / f"{quarantine_id}.json").read_text())
    except FileNotFoundError:
        raise ActionFailed(f"nothing is quarantined under {quarantine_id} on this device") from None
    original, stored = Path(meta["path"]), vault / quarantine_id
    if original.exists():
        raise ActionFailed(f"{original} exists again; move it away before restoring")
    if sha256_of(stored) != meta["sha256"]:
        raise ActionFailed(f"the quarantined copy of {original} no longer has SHA-256 {meta['sha256']}")
    original.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(stored), original)
    os.chown(original, meta["uid"], meta["gid"])
    os.chmod(original, meta["mode"])
    for item in meta["persistence"]:
        if "file" in item:
            shutil.move(vault / item["file"], item["path"])
            os.chmod(item["path"], 0o644)
        else:
            persistence.restore_lines(Path(item["path"]), item["lines"])
    (vault / f"{quarantine_id}.json").unlink()
    return meta


def _stop_and_quarantine(ctx: ActionContext, cmd: ActionCommand) -> Outcome:
    path = cmd.parameters.get("Path")
    meta = quarantine(ctx.settings, cmd.action_id, Path(path) if path else None, cmd.parameters.get("Sha256"))
    n = len(meta["persistence"])
    return Outcome(f"{meta['path']} quarantined (SHA-256 {meta['sha256']}); killed {len(meta['killed'])} process(es),"
                   f" removed {n} persistence entr{'y' if n == 1 else 'ies'}",
                   {k: meta[k] for k in ("path", "sha256", "killed", "persistence")})


def _restore(ctx: ActionContext, cmd: ActionCommand) -> Outcome:
    meta = restore(ctx.settings, str(cmd.parameters["QuarantineId"]))
    return Outcome(f"{meta['path']} restored with mode {meta['mode']:o}",
                   {"path": meta["path"], "sha256": meta["sha256"]})


HANDLERS = {"StopAndQuarantineFile": _stop_and_quarantine, "RestoreQuarantinedFile": _restore}
