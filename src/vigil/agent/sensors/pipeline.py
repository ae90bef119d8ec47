"""Pipelines seen whole: the members of one typed pipeline joined into one row with the pipeline's command line.

A shell runs `echo … | base64 -d | sh` as separate processes, none of which has the whole pipeline in its
argv, so rules written for `| base64 -d | sh` never see it. The kernel does know what ties them together: the
same parent, the same process group (with job control the group leader is the first member), and pipes, one
member's stdout being the next one's stdin. The process sensor records both per exec (and per exit, for a
forked shell that ran a builtin such as `echo` and never exec'd); this joiner groups the members and, once the
group's window has passed, emits one ``PipelineCreated`` row whose ProcessCommandLine is the joined line and
whose PipelineMembers names every process. The join is on the agent because only it sees every member at once,
before batching splits them; the server would have to keep per-device state across batches.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from typing import Any

from vigil.agent.sensors.base import Row

# Members of one pipeline are forked by their shell within milliseconds; a second covers a loaded machine.
# It is also how long the joined row waits after the group's first member.
WINDOW_SECONDS = 1.0
# Groups (and fork-only exits) held at once; a fork bomb of pipes cannot grow the joiner past this.
MAX_PENDING = 4096

_PTS_MAJORS = range(136, 144)  # Unix98 pseudo-terminals: /dev/pts/N, N = (major - 136) * 256 + minor
_TTY_MAJORS = (4, 5)  # virtual consoles and serial lines; /dev/tty, /dev/console, /dev/ptmx
_MEM_MAJOR = 1  # /dev/null (minor 3), /dev/zero (5), /dev/urandom (9)...


@dataclass(frozen=True, slots=True)
class Stdio:
    """What one of fds 0-2 is: its kind (pipe, tty, socket, file, char, none) and an identity within it."""

    kind: str
    ident: str = ""

    def __str__(self) -> str:
        return f"{self.kind}:{self.ident}" if self.ident else self.kind

    @property
    def pipe(self) -> str | None:
        return self.ident if self.kind == "pipe" else None


NONE = Stdio("none")


def describe_fd(mode: int, ino: int, rdev: int) -> Stdio:
    """An fd from the kernel's inode fields (mode 0: not open). rdev is the kernel's dev_t (major << 20 | minor)."""
    if mode == 0:
        return NONE
    if stat.S_ISFIFO(mode):
        return Stdio("pipe", str(ino))
    if stat.S_ISSOCK(mode):
        return Stdio("socket", str(ino))
    if stat.S_ISREG(mode):
        return Stdio("file", str(ino))
    if stat.S_ISCHR(mode):
        major, minor = rdev >> 20, rdev & 0xFFFFF
        if major in _PTS_MAJORS:
            return Stdio("tty", f"/dev/pts/{(major - 136) * 256 + minor}")
        if major in _TTY_MAJORS:
            return Stdio("tty", f"{major}:{minor}")
        if major == _MEM_MAJOR and minor == 3:
            return Stdio("null")
        return Stdio("char", f"{major}:{minor}")
    return Stdio("other", str(ino))


def describe_link(target: str) -> Stdio:
    """An fd from its /proc/PID/fd link ("pipe:[123]", "/dev/pts/3", "socket:[9]", a path), for the providers
    without eBPF."""
    if target.startswith("pipe:["):
        return Stdio("pipe", target[6:-1])
    if target.startswith("socket:["):
        return Stdio("socket", target[8:-1])
    if target.startswith("/dev/pts/") or target in ("/dev/tty", "/dev/console") or target.startswith("/dev/tty"):
        return Stdio("tty", target)
    if target == "/dev/null":
        return Stdio("null")
    if target.startswith("/"):
        return Stdio("file", target)
    return Stdio("other", target) if target else NONE


@dataclass(slots=True)
class Member:
    pid: int
    ppid: int
    pgid: int
    stdin: Stdio
    stdout: Stdio
    seen: float  # monotonic, when the joiner saw it
    row: Row | None = None  # its ProcessCreated row; None for a forked shell that never exec'd (a builtin)
    comm: str = ""


@dataclass(slots=True)
class _Group:
    deadline: float
    members: dict[int, Member] = field(default_factory=dict)


class PipelineJoiner:
    """Collects the pipe-connected processes of each (parent, process group) and emits the joined rows."""

    def __init__(self, window: float = WINDOW_SECONDS) -> None:
        self.window = window
        self._groups: dict[tuple[int, int], _Group] = {}
        self.joined = 0  # pipelines emitted, for tests and health
        self.dropped = 0  # groups not held because MAX_PENDING were pending

    def executed(self, row: Row, ppid: int, pgid: int, stdin: Stdio, stdout: Stdio, now: float) -> None:
        """A ProcessCreated row; kept when its stdin or stdout is a pipe."""
        if not (stdin.pipe or stdout.pipe) or pgid <= 0:
            return
        self._add(Member(int(row["ProcessId"]), ppid, pgid, stdin, stdout, now, row), now)

    def exited(
        self, pid: int, ppid: int, pgid: int, stdin: Stdio, stdout: Stdio, comm: str, now: float, *, execed: bool
    ) -> None:
        """A process exit; a process that never exec'd (a subshell running a builtin) joins by its pipes."""
        if execed or not (stdin.pipe or stdout.pipe) or pgid <= 0:
            return
        group = self._groups.get((ppid, pgid))
        if group is not None and pid in group.members:
            return
        self._add(Member(pid, ppid, pgid, stdin, stdout, now, None, comm), now)

    def _add(self, m: Member, now: float) -> None:
        key = (m.ppid, m.pgid)
        group = self._groups.get(key)
        if group is None:
            if len(self._groups) >= MAX_PENDING:
                self.dropped += 1
                return
            group = self._groups[key] = _Group(now + self.window)
        group.members[m.pid] = m

    def next_deadline(self) -> float | None:
        return min((g.deadline for g in self._groups.values()), default=None)

    def expire(self, now: float) -> list[Row]:
        """The joined rows of the groups whose window has passed."""
        due = [k for k, g in self._groups.items() if g.deadline <= now]
        rows: list[Row] = []
        for key in due:
            group = self._groups.pop(key)
            for chain in chains(list(group.members.values())):
                row = joined_row(chain)
                if row is not None:
                    rows.append(row)
                    self.joined += 1
        return rows


def chains(members: list[Member]) -> list[list[Member]]:
    """The pipe-connected runs among one group's members, each in pipeline order (writer before reader)."""
    by_read: dict[str, Member] = {}
    for m in members:
        if m.stdin.pipe:
            by_read.setdefault(m.stdin.pipe, m)
    written = {m.stdout.pipe for m in members if m.stdout.pipe}
    out: list[list[Member]] = []
    for head in sorted(members, key=lambda m: m.pid):
        if head.stdin.pipe in written:
            continue  # fed by another member: not where a chain starts
        chain = [head]
        seen = {head.pid}
        while (p := chain[-1].stdout.pipe) and (nxt := by_read.get(p)) is not None and nxt.pid not in seen:
            chain.append(nxt)
            seen.add(nxt.pid)
        if len(chain) >= 2:
            out.append(chain)
    return out


def _word(m: Member) -> str:
    if m.row is None:
        return f"[{m.comm or 'shell'} builtin]"
    return str(m.row.get("ProcessCommandLine") or m.row.get("FileName") or "")


def _already_in_parent(chain: list[Member]) -> bool:
    """`sh -c 'curl … | sh'`: the parent's own command line already holds the pipeline, and the rules see it
    there; joining it again would raise every alert twice."""
    parent = next((str(m.row.get("InitiatingProcessCommandLine") or "") for m in chain if m.row), "")
    if "|" not in parent:
        return False
    return all(_program(m.row) in parent for m in chain if m.row)


def _program(row: Row) -> str:
    """The name the member was started as (argv[0]'s last component: `sh`, where FileName says `dash`)."""
    words = str(row.get("ProcessCommandLine") or "").split(maxsplit=1)
    return words[0].rsplit("/", 1)[-1] if words else str(row.get("FileName") or "")


def joined_row(chain: list[Member]) -> Row | None:
    """One PipelineCreated row for a chain: the last exec'd member's row (the consumer, usually the shell that
    runs what the pipe delivers) with the whole pipeline as its command line and every member listed."""
    execed = [m for m in chain if m.row is not None]
    if not execed or _already_in_parent(chain):
        return None
    last = execed[-1]
    assert last.row is not None
    row: Row = dict(last.row)
    extra: dict[str, Any] = dict(row.get("AdditionalFields") or {})
    extra["PipelineSource"] = "process group and pipe inodes"
    row.update(
        ActionType="PipelineCreated",
        Timestamp=max(str(m.row["Timestamp"]) for m in execed if m.row is not None),
        ProcessCommandLine=" | ".join(_word(m) for m in chain),
        ProcessGroupId=last.pgid,
        PipelineMembers=[_member_entry(m) for m in chain],
        AdditionalFields=extra,
    )
    row.pop("ProcessStdin", None)
    row.pop("ProcessStdout", None)
    row.pop("ProcessStderr", None)
    return row


def _member_entry(m: Member) -> dict[str, Any]:
    if m.row is None:
        return {
            "ProcessId": m.pid,
            "FileName": m.comm,
            "ProcessCommandLine": None,
            "Builtin": True,
            "ProcessStdin": str(m.stdin),
            "ProcessStdout": str(m.stdout),
        }
    return {
        "ProcessId": m.pid,
        "FileName": m.row.get("FileName"),
        "FolderPath": m.row.get("FolderPath"),
        "ProcessCommandLine": m.row.get("ProcessCommandLine"),
        "ProcessCreationTime": m.row.get("ProcessCreationTime"),
        "ProcessStdin": str(m.stdin),
        "ProcessStdout": str(m.stdout),
    }
