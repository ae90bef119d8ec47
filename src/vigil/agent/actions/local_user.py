"""Disable a local account (its password locked and the account expired, so neither a password nor a key lets it
sign in) and enable it again on undo, exactly as it was; /etc/shadow is edited under shadow-utils' lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from vigil.agent.actions.base import ActionContext, ActionFailed, Outcome
from vigil.agent.actions.undo import UndoRecords
from vigil.wire import ActionCommand

KIND = "DisableLocalUser"
# Days since the epoch in shadow's expiry field: "1" means expired since 2 January 1970, which PAM's account
# check and sshd refuse for every kind of login, public keys included (a locked password alone stops only passwords).
EXPIRED = "1"


@contextlib.contextmanager
def _pwd_lock(root: Path) -> Iterator[None]:
    """The lock lckpwdf(3) takes (a write lock on /etc/.pwd.lock), so passwd, usermod and we never interleave."""
    fd = os.open(root / "etc" / ".pwd.lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _uid(root: Path, name: str) -> int:
    for line in (root / "etc" / "passwd").read_text(errors="replace").splitlines():
        fields = line.split(":")
        if fields[0] == name and len(fields) >= 3:
            return int(fields[2])
    raise ActionFailed(f"no local account {name!r} in {root / 'etc' / 'passwd'}")


def _rewrite(path: Path, lines: list[str]) -> None:
    """Replace the file atomically, with its mode and owner."""
    st = path.stat()
    tmp = path.with_name(f".{path.name}.vigil")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, "".join(ln + "\n" for ln in lines).encode())
        os.fchown(fd, st.st_uid, st.st_gid)
        os.fchmod(fd, st.st_mode & 0o7777)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _edit(root: Path, name: str, change: dict[int, str] | None = None) -> list[str]:
    """The account's shadow fields; with ``change`` (field index → value), written back first."""
    shadow = root / "etc" / "shadow"
    lines = shadow.read_text(errors="replace").splitlines()
    for i, line in enumerate(lines):
        fields = line.split(":")
        if fields[0] == name:
            fields += [""] * (9 - len(fields))
            if change:
                for k, v in change.items():
                    fields[k] = v
                lines[i] = ":".join(fields)
                _rewrite(shadow, lines)
            return fields
    raise ActionFailed(f"account {name!r} has no entry in {shadow}")


def _disable(ctx: ActionContext, cmd: ActionCommand) -> Outcome:
    root, name = ctx.settings.persistence_root, str(cmd.parameters["AccountName"])
    if _uid(root, name) == 0:
        raise ActionFailed(f"{name} has uid 0; an administrator's account is never disabled")
    with _pwd_lock(root):
        fields = _edit(root, name)
        before = {"account": name, "passwordLocked": fields[1].startswith("!"), "expire": fields[7]}
        UndoRecords(ctx.settings).put(cmd.action_id, KIND, before)
        _edit(root, name, {1: fields[1] if before["passwordLocked"] else "!" + fields[1], 7: EXPIRED})
    return Outcome(f"account {name} disabled (password locked, account expired); its running sessions go on until "
                   "they end", before)


def _enable(ctx: ActionContext, cmd: ActionCommand) -> Outcome:
    records, ref = UndoRecords(ctx.settings), str(cmd.parameters["UndoOf"])
    rec = records.get(ref, KIND)
    root, name = ctx.settings.persistence_root, str(rec["account"])
    with _pwd_lock(root):
        fields = _edit(root, name)
        password = fields[1][1:] if fields[1].startswith("!") and not rec["passwordLocked"] else fields[1]
        _edit(root, name, {1: password, 7: str(rec["expire"])})
    records.drop(ref)
    return Outcome(f"account {name} enabled as it was before action {ref}", {"account": name})


HANDLERS = {KIND: _disable, "EnableLocalUser": _enable}
