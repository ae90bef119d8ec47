"""Restrict app execution: fanotify FAN_OPEN_EXEC_PERM denies every exec outside an allow-list.

Known gaps (measured in ../shared/reference/linux-sensor.md §2(b)): a blocked file still runs through
``ld.so <file>`` or ``sh <script>``, since those raise only OPEN_PERM on the file, not OPEN_EXEC_PERM.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import struct
import sys
import threading
from pathlib import Path
from typing import Any

from vigil.agent.actions.base import ActionContext, ActionFailed, ActionSettings, Outcome
from vigil.agent.sensors.fanotify import (
    FAN_ALLOW,
    FAN_CLASS_CONTENT,
    FAN_CLOEXEC,
    FAN_DENY,
    FAN_MARK_ADD,
    FAN_MARK_MOUNT,
    FAN_OPEN_EXEC_PERM,
    FAN_UNLIMITED_QUEUE,
    fanotify_init,
    mark,
)
from vigil.agent.sensors.fanotify import METADATA as _META
from vigil.wire import ActionCommand

log = logging.getLogger(__name__)

_RESPONSE = struct.Struct("=iI")
STATE_FILE = "restriction.json"
SERVICE = "exec_restriction"
# Executables are allowed from these prefixes unless the action says otherwise; the agent's own
# interpreter is always added, so the agent can keep running its tools.
DEFAULT_ALLOW = ("/usr/", "/bin/", "/sbin/", "/lib/", "/lib64/", "/opt/", "/snap/")
MARKED_FS = {"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "overlay", "vfat", "zfs", "f2fs", "nfs", "nfs4"}

def default_marks() -> list[str]:
    """Every mounted filesystem a program could be run from."""
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[2] in MARKED_FS:
            out.append(parts[1].replace("\\040", " "))
    return out


class ExecRestriction:
    """A permission listener: answers every exec on the marked mounts, fail-open if it breaks."""

    def __init__(self, marks: list[str], allow: list[str]) -> None:
        self.marks, self.allow = marks, tuple(allow)
        self.denied = 0
        try:
            fd = fanotify_init(FAN_CLOEXEC | FAN_CLASS_CONTENT | FAN_UNLIMITED_QUEUE)
        except OSError as e:
            raise ActionFailed(f"{e.strerror}") from e
        self._fd = fd
        for m in marks:
            try:
                mark(fd, FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_OPEN_EXEC_PERM, m)
            except OSError as e:
                os.close(fd)
                raise ActionFailed(f"{e.strerror}") from e
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vigil-exec-restriction", daemon=True)
        self._thread.start()

    def allowed(self, path: str) -> bool:
        return path.startswith(self.allow)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                # A timeout, so that close() is noticed: closing an fd does not wake a blocked read.
                if not select.select([self._fd], [], [], 0.2)[0]:
                    continue
                buf = os.read(self._fd, 64 * _META.size)
            except (OSError, ValueError) as e:
                if self._stop.is_set():
                    return
                log.error("exec restriction stopped reading (%s); executions are no longer checked", e)
                return
            off = 0
            while off + _META.size <= len(buf):
                length, _, _, _, _, fd, _pid = _META.unpack_from(buf, off)
                off += length or _META.size
                if fd < 0:
                    continue
                verdict = FAN_ALLOW
                try:
                    path = os.readlink(f"/proc/self/fd/{fd}")
                    if not self.allowed(path):
                        verdict = FAN_DENY
                        self.denied += 1
                        log.warning("denied execution of %s (app execution is restricted)", path)
                except OSError:
                    verdict = FAN_ALLOW  # fail open: an unreadable event must never hang the system
                finally:
                    with contextlib.suppress(OSError):
                        os.write(self._fd, _RESPONSE.pack(fd, verdict))
                    os.close(fd)

    def close(self) -> None:
        """Closing the group lets every pending and future exec through."""
        self._stop.set()
        self._thread.join(2)
        os.close(self._fd)


def _state(settings: ActionSettings) -> Path:
    return settings.state_dir / STATE_FILE


def start(ctx: ActionContext, marks: list[str], allow: list[str]) -> ExecRestriction:
    stop_listener(ctx)
    full_allow = [*allow, sys.prefix.rstrip("/") + "/", os.path.realpath(sys.executable)]
    r = ExecRestriction(marks, full_allow)
    ctx.services[SERVICE] = r
    return r


def stop_listener(ctx: ActionContext) -> bool:
    r = ctx.services.pop(SERVICE, None)
    if r is None:
        return False
    r.close()
    return True


def restore(ctx: ActionContext) -> str | None:
    try:
        state = json.loads(_state(ctx.settings).read_text())
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise ActionFailed(f"{_state(ctx.settings)} is unreadable: {e}") from e
    start(ctx, state["marks"], state["allow"])
    return f"app execution restriction on {', '.join(state['marks'])} (action {state.get('action_id')})"


def _restrict(ctx: ActionContext, cmd: ActionCommand) -> Outcome:
    marks = [str(p) for p in cmd.parameters.get("Paths") or default_marks()]
    allow = [str(p) for p in cmd.parameters.get("AllowPrefixes") or DEFAULT_ALLOW]
    start(ctx, marks, allow)
    state: dict[str, Any] = {"action_id": cmd.action_id, "marks": marks, "allow": allow}
    fd = os.open(_state(ctx.settings), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f)
    return Outcome(f"app execution restricted on {len(marks)} filesystem(s); allowed: {', '.join(allow)}", state)


def _unrestrict(ctx: ActionContext, cmd: ActionCommand) -> Outcome:
    had = stop_listener(ctx)
    with contextlib.suppress(FileNotFoundError):
        _state(ctx.settings).unlink()
        had = True
    return Outcome("app execution restriction removed" if had else "app execution was not restricted")


HANDLERS = {"RestrictCodeExecution": _restrict, "UnrestrictCodeExecution": _unrestrict}
