"""Collect an investigation package: autoruns, packages, processes, network, users, logs, temp listings."""

from __future__ import annotations

import csv
import glob
import io
import os
import pwd
import shutil
import stat
import subprocess
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vigil.agent.actions.base import ActionContext, Outcome
from vigil.wire import ActionCommand

SUMMARY = "CollectionSummaryReport.csv"
MAX_FILE_BYTES = 8 * 1024 * 1024
AUTH_LOG_LINES = 5000
LISTING_LIMIT = 20_000


@dataclass(frozen=True)
class Item:
    """One thing to collect: a command's output, a set of files, or a listing made in Python."""

    name: str  # the path inside the archive
    kind: str  # command | files | listing
    source: str


ITEMS: tuple[Item, ...] = (
    Item("autoruns/systemd-unit-files.txt", "command", "systemctl list-unit-files --no-pager"),
    Item("autoruns/systemd-timers.txt", "command", "systemctl list-timers --all --no-pager"),
    Item("autoruns/systemd", "files", "/etc/systemd/system/*.service /etc/systemd/system/*.timer "
                                      "/etc/systemd/system/*/*.service"),
    Item("autoruns/cron", "files", "/etc/crontab /etc/cron.d/* /var/spool/cron/crontabs/* /etc/cron.hourly/* "
                                   "/etc/cron.daily/* /etc/cron.weekly/* /etc/cron.monthly/* /etc/anacrontab"),
    Item("autoruns/shell-profiles", "files", "/etc/profile /etc/profile.d/* /etc/bash.bashrc /etc/environment "
                                             "/root/.bashrc /root/.profile /home/*/.bashrc /home/*/.profile"),
    Item("autoruns/ld.so.preload", "files", "/etc/ld.so.preload"),
    Item("autoruns/rc.local", "files", "/etc/rc.local"),
    Item("packages/dpkg.txt", "command", "dpkg-query -W -f=${Package}\t${Version}\t${Architecture}\n"),
    Item("packages/rpm.txt", "command", "rpm -qa"),
    Item("processes/ps.txt", "command", "ps -eo pid,ppid,user,lstart,args --forest"),
    Item("processes/processes.csv", "listing", "processes"),
    Item("network/ss.txt", "command", "ss -tunap"),
    Item("network/ip-addr.txt", "command", "ip addr"),
    Item("network/ip-route.txt", "command", "ip route"),
    Item("network/ip-neigh.txt", "command", "ip neigh"),
    Item("network/nft-ruleset.txt", "command", "nft list ruleset"),
    Item("network/config", "files", "/etc/hosts /etc/resolv.conf"),
    Item("users/accounts", "files", "/etc/passwd /etc/group"),
    Item("users/who.txt", "command", "who -a"),
    Item("users/last.txt", "command", "last -n 100"),
    Item("logs/auth.log", "listing", "auth_log"),
    Item("temp/tmp.txt", "listing", "/tmp"),  # noqa: S108 - listings of temp folders, not temp files
    Item("temp/var-tmp.txt", "listing", "/var/tmp"),  # noqa: S108
    Item("temp/dev-shm.txt", "listing", "/dev/shm"),  # noqa: S108
    Item("system/uname.txt", "command", "uname -a"),
    Item("system/os-release", "files", "/etc/os-release"),
    Item("system/uptime.txt", "command", "uptime"),
)


def _command(line: str) -> tuple[bytes, str]:
    args = line.split(" ", 2) if line.startswith("dpkg-query") else line.split()
    if not shutil.which(args[0]):
        return b"", f"{args[0]} is not installed"
    try:
        done = subprocess.run(args, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return b"", str(e)
    if done.returncode != 0:
        return done.stdout, f"exit status {done.returncode}: {done.stderr.decode(errors='replace').strip()[:300]}"
    return done.stdout, ""


def _listing(root: str) -> bytes:
    """Every file under ``root`` (not following links) with mode, owner, size and times."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["path", "mode", "owner", "size", "mtime", "ctime"])
    n = 0
    for dirpath, dirs, files in os.walk(root, followlinks=False):
        for name in sorted(dirs + files):
            p = os.path.join(dirpath, name)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            w.writerow([p, stat.filemode(st.st_mode), _owner(st.st_uid), st.st_size,
                        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.st_mtime)),
                        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.st_ctime))])
            n += 1
            if n >= LISTING_LIMIT:
                w.writerow([f"(stopped after {LISTING_LIMIT} entries)"])
                return out.getvalue().encode()
    return out.getvalue().encode()


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _processes() -> bytes:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["pid", "ppid", "uid", "exe", "cmdline"])
    for entry in sorted(os.scandir("/proc"), key=lambda e: int(e.name) if e.name.isdigit() else 0):
        if not entry.name.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry.name}/status").read_text()
            fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
            cmd = Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            try:
                exe = os.readlink(f"/proc/{entry.name}/exe")
            except OSError:
                exe = ""
        except OSError:
            continue
        uid = (fields.get("Uid", "").split() or [""])[0]
        w.writerow([entry.name, fields.get("PPid", "").strip(), uid, exe, cmd.strip()])
    return out.getvalue().encode()


def _auth_log() -> tuple[bytes, str]:
    for path in ("/var/log/auth.log", "/var/log/secure"):
        if os.path.exists(path):
            with open(path, "rb") as f:
                f.seek(max(0, os.path.getsize(path) - 4 * 1024 * 1024))
                return b"\n".join(f.read().splitlines()[-AUTH_LOG_LINES:]) + b"\n", ""
    data, err = _command(f"journalctl --no-pager -n {AUTH_LOG_LINES} SYSLOG_FACILITY=4 SYSLOG_FACILITY=10")
    return data, (f"no auth.log or secure file; journal: {err}" if err else "")


LISTINGS: dict[str, Callable[[], tuple[bytes, str]]] = {
    "processes": lambda: (_processes(), ""),
    "auth_log": _auth_log,
}


def collect(dest: Path) -> tuple[Path, list[list[str]]]:
    """Write the package to ``dest`` (tar.gz); returns it and the summary rows."""
    rows: list[list[str]] = []
    with tarfile.open(dest, "w:gz") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o600
            tar.addfile(info, io.BytesIO(data))

        for item in ITEMS:
            try:
                if item.kind == "command":
                    data, err = _command(item.source)
                    add(item.name, data)
                    rows.append([item.name, item.kind, item.source, "Failed" if err else "Collected", err,
                                 str(len(data))])
                elif item.kind == "listing":
                    data, err = LISTINGS[item.source]() if item.source in LISTINGS else (_listing(item.source), "")
                    add(item.name, data)
                    rows.append([item.name, item.kind, item.source, "Failed" if err else "Collected", err,
                                 str(len(data))])
                else:
                    rows += _add_files(tar, item)
            except OSError as e:  # one item failing never loses the package; the summary says what failed
                rows.append([item.name, item.kind, item.source, "Failed", str(e), "0"])
        summary = io.StringIO()
        w = csv.writer(summary)
        w.writerow(["item", "kind", "source", "status", "error", "bytes"])
        w.writerows(rows)
        add(SUMMARY, summary.getvalue().encode())
    return dest, rows


def _add_files(tar: tarfile.TarFile, item: Item) -> list[list[str]]:
    rows = []
    paths = [p for pattern in item.source.split() for p in sorted(glob.glob(pattern))]
    if not paths:
        return [[item.name, item.kind, item.source, "Absent", "", "0"]]
    for p in paths:
        name = f"{item.name}/{p.lstrip('/')}"
        try:
            st = os.lstat(p)
            if not stat.S_ISREG(st.st_mode):
                continue
            if st.st_size > MAX_FILE_BYTES:
                rows.append([name, item.kind, p, "Failed", f"larger than {MAX_FILE_BYTES} bytes", str(st.st_size)])
                continue
            tar.add(p, arcname=name, recursive=False)
            rows.append([name, item.kind, p, "Collected", "", str(st.st_size)])
        except OSError as e:
            rows.append([name, item.kind, p, "Failed", str(e), "0"])
    return rows


def _collect(ctx: ActionContext, cmd: ActionCommand) -> Outcome:
    folder = ctx.settings.state_dir / "packages"
    folder.mkdir(mode=0o700, exist_ok=True)
    dest, rows = collect(folder / f"{cmd.action_id}.tar.gz")
    failed = [r[0] for r in rows if r[3] == "Failed"]
    return Outcome(f"package collected: {sum(r[3] == 'Collected' for r in rows)} items, {len(failed)} failed",
                   {"failed": failed[:50], "size": dest.stat().st_size}, artifact=dest)


HANDLERS = {"CollectInvestigationPackage": _collect}
