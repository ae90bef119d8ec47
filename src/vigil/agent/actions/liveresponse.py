"""Live response verbs on the device: read-only inspection, getfile, putfile, library scripts, remediation."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from vigil.agent.actions import persistence, quarantine
from vigil.agent.actions.base import ActionContext, ActionFailed, Outcome
from vigil.agent.actions.kill import kill_exact
from vigil.agent.actions.package import _processes
from vigil.wire import ActionCommand

OUTPUT_LIMIT = 256 * 1024
FINDFILE_SECONDS = 20.0
FINDFILE_SKIP = ("/proc", "/sys", "/dev", "/run")


def _text(data: bytes | str) -> str:
    text = data.decode(errors="replace") if isinstance(data, bytes) else data
    return text if len(text) <= OUTPUT_LIMIT else text[:OUTPUT_LIMIT] + "\n(output truncated)"


def _processes_verb(ctx: ActionContext, args: list[str], cmd: ActionCommand) -> Outcome:
    return Outcome("processes listed", {"text": _text(_processes())})


def _connections(ctx: ActionContext, args: list[str], cmd: ActionCommand) -> Outcome:
    try:
        done = subprocess.run(["ss", "-tunap"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ActionFailed(f"ss could not be run: {e}") from e
    return Outcome("connections listed", {"text": _text(done.stdout)})


def _persistence(ctx: ActionContext, args: list[str], cmd: ActionCommand) -> Outcome:
    found = persistence.entries(ctx.settings.persistence_root)
    return Outcome(f"{len(found)} persistence entries", {
        "text": _text("\n".join(f"{e.path}\t{e.line if e.line is not None else '(unit file)'}" for e in found))})


def _fileinfo(ctx: ActionContext, args: list[str], cmd: ActionCommand) -> Outcome:
    path = Path(args[0])
    try:
        st = path.lstat()
    except OSError as e:
        raise ActionFailed(f"{path}: {e.strerror}") from e
    info: dict[str, Any] = {"path": str(path), "mode": stat.filemode(st.st_mode), "uid": st.st_uid,
                            "gid": st.st_gid, "size": st.st_size, "inode": st.st_ino,
                            "mtime": datetime.fromtimestamp(st.st_mtime).astimezone().isoformat(),
                            "ctime": datetime.fromtimestamp(st.st_ctime).astimezone().isoformat()}
    if stat.S_ISREG(st.st_mode) and st.st_size <= 10 * 1024**3:
        info["sha256"] = quarantine.sha256_of(path)
    if stat.S_ISLNK(st.st_mode):
        info["target"] = os.readlink(path)
    return Outcome(f"{path}: {info['mode']} {st.st_size} bytes", info)


def _findfile(ctx: ActionContext, args: list[str], cmd: ActionCommand) -> Outcome:
    name, found, deadline = args[0], [], time.monotonic() + FINDFILE_SECONDS
    for dirpath, dirs, files in os.walk("/", followlinks=False):
        dirs[:] = [d for d in dirs if os.path.join(dirpath, d) not in FINDFILE_SKIP]
        if name in files or name in dirs:
            found.append(os.path.join(dirpath, name))
        if len(found) >= 100 or time.monotonic() > deadline:
            break
    return Outcome(f"{len(found)} match(es) for {name}", {"matches": found})


def _getfile(ctx: ActionContext, args: list[str], cmd: ActionCommand) -> Outcome:
    path = Path(args[0])
    try:
        st = path.stat()
    except OSError as e:
        raise ActionFailed(f"{path}: {e.strerror}") from e
    if not stat.S_ISREG(st.st_mode):
        raise ActionFailed(f"{path} is not a regular file")
    if st.st_size > ctx.settings.getfile_max_bytes:
        raise ActionFailed(f"{path} is {st.st_size} bytes; getfile is limited to {ctx.settings.getfile_max_bytes}")
    folder = ctx.settings.state_dir / "packages"
    folder.mkdir(mode=0o700, exist_ok=True)
    copy = folder / f"{cmd.action_id}.file"
    fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    h = hashlib.sha256()
    with os.fdopen(fd, "wb") as out, path.open("rb") as src:
        for chunk in iter(lambda: src.read(1 << 20), b""):
            h.update(chunk)
            out.write(chunk)
    return Outcome(f"{path} fetched ({st.st_size} bytes)", {"path": str(path), "sha256": h.hexdigest(),
                                                            "size": st.st_size}, artifact=copy)


def _library_file(ctx: ActionContext, name: str, cmd: ActionCommand) -> Path:
    """Write the library file carried by the signed command into the work folder, checking its hash."""
    content = base64.b64decode(str(cmd.parameters.get("Content", "")))
    if hashlib.sha256(content).hexdigest() != cmd.parameters.get("ContentSha256"):
        raise ActionFailed(f"library file {name} does not match its SHA-256; not written")
    if "/" in name or name in (".", ".."):
        raise ActionFailed(f"{name!r} is not a plain file name")
    work = ctx.settings.work_dir
    work.mkdir(mode=0o700, parents=True, exist_ok=True)
    dest = work / name
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(content)
    return dest


def _putfile(ctx: ActionContext, args: list[str], cmd: ActionCommand) -> Outcome:
    dest = _library_file(ctx, args[0], cmd)
    return Outcome(f"{args[0]} written to {dest}", {"path": str(dest)})


def _run(ctx: ActionContext, args: list[str], cmd: ActionCommand) -> Outcome:
    script = _library_file(ctx, args[0], cmd)
    try:
        done = subprocess.run(["/bin/sh", str(script), *args[1:]], cwd=ctx.settings.work_dir, capture_output=True,
                              timeout=ctx.settings.script_timeout_seconds, check=False)
    except subprocess.TimeoutExpired as e:
        raise ActionFailed(f"{args[0]} ran past {ctx.settings.script_timeout_seconds:g} s and was stopped") from e
    out = {"exitCode": done.returncode, "stdout": _text(done.stdout), "stderr": _text(done.stderr)}
    if done.returncode != 0:
        raise ActionFailed(f"{args[0]} exited with {done.returncode}: {_text(done.stderr)[:1000]}")
    return Outcome(f"{args[0]} ran (exit 0)", out)


def _remediate(ctx: ActionContext, args: list[str], cmd: ActionCommand) -> Outcome:
    if args[0] == "file":
        meta = quarantine.quarantine(ctx.settings, cmd.action_id, Path(args[1]), None)
        return Outcome(f"{meta['path']} quarantined; undo with: undo {cmd.action_id}",
                       {"path": meta["path"], "sha256": meta["sha256"], "killed": meta["killed"]})
    pid, created = int(args[1]), datetime.fromisoformat(args[2].replace("Z", "+00:00"))
    kill_exact(pid, created)
    return Outcome(f"process {pid} killed", {"ProcessId": pid})


def _undo(ctx: ActionContext, args: list[str], cmd: ActionCommand) -> Outcome:
    meta = quarantine.restore(ctx.settings, args[0])
    return Outcome(f"{meta['path']} restored", {"path": meta["path"], "sha256": meta["sha256"]})


VERBS: dict[str, Callable[[ActionContext, list[str], ActionCommand], Outcome]] = {
    "processes": _processes_verb, "connections": _connections, "persistence": _persistence, "fileinfo": _fileinfo,
    "findfile": _findfile, "getfile": _getfile, "putfile": _putfile, "run": _run, "remediate": _remediate,
    "undo": _undo,
}


def _live_response(ctx: ActionContext, cmd: ActionCommand) -> Outcome:
    verb = str(cmd.parameters.get("Verb", ""))
    if verb not in VERBS:
        raise ActionFailed(f"this agent has no live response verb {verb!r}")
    return VERBS[verb](ctx, [str(a) for a in cmd.parameters.get("Args", [])], cmd)


HANDLERS = {"LiveResponse": _live_response}
