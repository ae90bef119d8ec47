"""Remove a persistence entry (lines of a cron file, shell profile, authorized_keys or ld.so.preload, or a whole
file such as a unit or a cron.d drop-in) and put it back on undo."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from vigil.agent.actions import persistence
from vigil.agent.actions.base import ActionContext, ActionFailed, Outcome
from vigil.agent.actions.undo import UndoRecords
from vigil.wire import ActionCommand

KIND = "RemovePersistenceEntry"


def _is_comment(line: str) -> bool:
    return not line.strip() or line.lstrip().startswith("#")


def _remove_everywhere(ctx: ActionContext, cmd: ActionCommand, match: str) -> Outcome:
    """Lines that contain ``match`` in every line file (the cron entry that runs a command, wherever it is)."""
    found: dict[str, list[str]] = {}
    for e in persistence.entries(ctx.settings.persistence_root):
        if e.line is not None and match in e.line:
            found.setdefault(e.path, []).append(e.line)
    if not found:
        raise ActionFailed(f"no persistence entry contains {match!r}; nothing was removed")
    removed = [{"path": p, "lines": ls} for p, ls in found.items()]
    UndoRecords(ctx.settings).put(cmd.action_id, KIND, {"files": removed})
    for item in removed:
        persistence.remove_lines(Path(str(item["path"])), list(item["lines"]))
    n = sum(len(ls) for ls in found.values())
    return Outcome(f"removed {n} line{'' if n == 1 else 's'} from {', '.join(found)}", {"files": removed})


def _remove(ctx: ActionContext, cmd: ActionCommand) -> Outcome:
    root = ctx.settings.persistence_root
    if not cmd.parameters.get("Path"):
        return _remove_everywhere(ctx, cmd, str(cmd.parameters["Match"]))
    path = Path(os.path.normpath(str(cmd.parameters["Path"])))
    if not persistence.is_entry_file(root, path):
        raise ActionFailed(f"{path} is not a persistence file under {root} (cron, systemd unit, shell profile, "
                           "authorized_keys, ld.so.preload); nothing was removed")
    records = UndoRecords(ctx.settings)
    wanted, match = cmd.parameters.get("Lines"), cmd.parameters.get("Match")
    if wanted or match:
        current = path.read_text(errors="replace").splitlines()
        if wanted:
            missing = [w for w in wanted if w not in current]
            if missing:
                raise ActionFailed(f"{path} has no line {missing[0]!r}; nothing was removed")
            found = [ln for ln in current if ln in set(wanted)]
        else:
            found = [ln for ln in current if str(match) in ln and not _is_comment(ln)]
            if not found:
                raise ActionFailed(f"no line of {path} contains {match!r}; nothing was removed")
        records.put(cmd.action_id, KIND, {"path": str(path), "lines": found})
        persistence.remove_lines(path, found)
        n = len(found)
        return Outcome(f"removed {n} line{'' if n == 1 else 's'} from {path}", {"path": str(path), "lines": found})
    st = path.stat()
    records.put(cmd.action_id, KIND, {"path": str(path), "file": True, "mode": st.st_mode & 0o7777,
                                      "uid": st.st_uid, "gid": st.st_gid})
    kept = records.kept_file(cmd.action_id)
    shutil.move(path, kept)
    os.chmod(kept, 0)
    return Outcome(f"{path} removed (kept for undo)", {"path": str(path), "file": True})


def _restore(ctx: ActionContext, cmd: ActionCommand) -> Outcome:
    records = UndoRecords(ctx.settings)
    ref = str(cmd.parameters["UndoOf"])
    rec = records.get(ref, KIND)
    if "files" in rec:
        for item in rec["files"]:
            persistence.restore_lines(Path(item["path"]), item["lines"])
        records.drop(ref)
        return Outcome(f"lines put back in {', '.join(i['path'] for i in rec['files'])}",
                       {"paths": [i["path"] for i in rec["files"]]})
    path = Path(rec["path"])
    if rec.get("file"):
        if path.exists():
            raise ActionFailed(f"{path} exists again; it was not overwritten with the removed copy")
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(records.kept_file(ref), path)
        os.chown(path, rec["uid"], rec["gid"])
        os.chmod(path, rec["mode"])
        message = f"{path} put back"
    else:
        persistence.restore_lines(path, rec["lines"])
        message = f"{len(rec['lines'])} line(s) put back in {path}"
    records.drop(ref)
    return Outcome(message, {"path": str(path)})


HANDLERS = {KIND: _remove, "RestorePersistenceEntry": _restore}
