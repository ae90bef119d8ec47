"""Stop and disable a systemd unit, and on undo put back exactly the links that enabled it (and start it again
where a service manager runs). Disabling is `systemctl [--root] disable`; stopping is `systemctl stop` when
systemd manages the host, otherwise (a container, or a test root) the processes running the unit's program."""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
from pathlib import Path

from vigil.agent.actions.base import ActionContext, ActionFailed, Outcome
from vigil.agent.actions.kill import kill_exact
from vigil.agent.actions.undo import UndoRecords
from vigil.wire import ActionCommand

KIND = "StopAndDisableService"
UNIT_DIRS = ("etc/systemd/system", "run/systemd/system", "usr/lib/systemd/system", "lib/systemd/system")
# ExecStart= prefixes that change how systemd runs the program, not which program it is.
_EXEC_PREFIXES = "@-:+!"


def _manager(root: Path) -> bool:
    """Whether systemd runs this host (it is the one the root names): then stop and start go through it."""
    return root == Path("/") and Path("/run/systemd/system").is_dir()


def _systemctl(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["systemctl", *([] if root == Path("/") else [f"--root={root}"]), *args]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ActionFailed(f"{shlex.join(argv)} could not run: {e}") from None
    if check and done.returncode != 0:
        raise ActionFailed(f"{shlex.join(argv)} failed ({done.returncode}): {done.stderr.strip()[:500]}")
    return done


def unit_file(root: Path, unit: str) -> Path:
    for d in UNIT_DIRS:
        if (root / d / unit).is_file():
            return root / d / unit
    raise ActionFailed(f"no unit file {unit} in {', '.join(str(root / d) for d in UNIT_DIRS)}")


def links(root: Path, unit: str) -> list[list[str]]:
    """The symlinks in /etc/systemd/system that enable ``unit`` (in .wants/.requires folders, or aliases)."""
    out = []
    for folder, dirs, files in os.walk(root / "etc" / "systemd" / "system"):
        for name in sorted(dirs + files):
            p = Path(folder) / name
            if p.is_symlink() and (name == unit or os.readlink(p).rsplit("/", 1)[-1] == unit):
                out.append([str(p), os.readlink(p)])
    return sorted(out)


def program(unit_path: Path) -> str:
    """The first ExecStart='s program (for stopping what the unit runs where no service manager does)."""
    for line in unit_path.read_text(errors="replace").splitlines():
        key, _, value = line.strip().partition("=")
        if key.strip() == "ExecStart" and value.strip():
            with contextlib.suppress(ValueError):
                return shlex.split(value.strip().lstrip(_EXEC_PREFIXES))[0]
    return ""


def _running(prog: str) -> list[int]:
    """Processes whose executable, or whose interpreter's script, is ``prog``."""
    try:
        st = os.stat(prog)
    except OSError:
        return []
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            exe = os.stat(f"/proc/{entry.name}/exe")
            argv = Path(f"/proc/{entry.name}/cmdline").read_bytes().split(b"\0")
            if (exe.st_dev, exe.st_ino) == (st.st_dev, st.st_ino) or (len(argv) > 1 and argv[1] == prog.encode()):
                pids.append(int(entry.name))
    return pids


def _stop(ctx: ActionContext, cmd: ActionCommand) -> Outcome:
    root, unit = ctx.settings.persistence_root, str(cmd.parameters["Unit"])
    path = unit_file(root, unit)
    enabled = links(root, unit)
    managed = _manager(root)
    was_active, killed = False, []
    if managed:
        was_active = _systemctl(root, "is-active", "--quiet", unit, check=False).returncode == 0
        _systemctl(root, "stop", unit)
    else:
        for pid in _running(program(path)):
            with contextlib.suppress(ActionFailed):  # it may end by itself meanwhile
                kill_exact(pid, None)
                killed.append(pid)
    record = {"unit": unit, "links": enabled, "wasActive": was_active, "managed": managed, "killed": killed}
    UndoRecords(ctx.settings).put(cmd.action_id, KIND, record)
    if enabled:
        _systemctl(root, "disable", unit)
        if left := links(root, unit):
            raise ActionFailed(f"{unit} is still enabled after systemctl disable: {left[0][0]}")
    stopped = "stopped" if managed else f"killed {len(killed)} process(es) running {program(path) or 'it'}"
    disabled = f"disabled, {len(enabled)} link(s) removed" if enabled else "it was not enabled"
    return Outcome(f"{unit} {stopped}; {disabled}", record)


def _start(ctx: ActionContext, cmd: ActionCommand) -> Outcome:
    records, ref = UndoRecords(ctx.settings), str(cmd.parameters["UndoOf"])
    rec = records.get(ref, KIND)
    root, unit = ctx.settings.persistence_root, str(rec["unit"])
    unit_file(root, unit)
    for link, target in rec["links"]:
        p = Path(link)
        if not p.is_symlink():
            p.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(target, p)
    started = ""
    if rec["managed"] and _manager(root):
        _systemctl(root, "daemon-reload")
        if rec["wasActive"]:
            _systemctl(root, "start", unit)
            started = "; started"
    elif rec["killed"]:
        started = "; no service manager runs here, so it starts again at the next boot"
    records.drop(ref)
    return Outcome(f"{unit} enabled again ({len(rec['links'])} link(s)){started}", {"unit": unit})


HANDLERS = {KIND: _stop, "StartAndEnableService": _start}
