"""Kill a process by pid and start time through a pidfd, so a recycled pid is never signalled."""

from __future__ import annotations

import os
import select
import signal
import time
from datetime import datetime

from vigil.agent.actions.base import ActionContext, ActionFailed, Outcome
from vigil.wire import ActionCommand

# /proc start times are in clock ticks from boot; converted to wall time they are good to about this.
START_TIME_TOLERANCE = 1.0


def start_time(pid: int) -> float:
    """The process's start as epoch seconds, from /proc/<pid>/stat and CLOCK_BOOTTIME."""
    try:
        stat = open(f"/proc/{pid}/stat", "rb").read()  # noqa: SIM115 - one read, closed by refcount
    except FileNotFoundError:
        raise ProcessLookupError(pid) from None
    fields = stat[stat.rindex(b")") + 2:].split()
    ticks = int(fields[19])  # field 22 of stat, counted after "pid (comm)"
    booted = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
    return booted + ticks / os.sysconf("SC_CLK_TCK")


def kill_exact(pid: int, created: datetime | None, sig: int = signal.SIGKILL, wait: float = 5.0) -> None:
    """Signal ``pid`` only if it is still the process that started at ``created``; wait for it to end.

    The pidfd is opened first and the start time read after: if the pid was recycled in between, the
    start time differs and nothing is sent; the signal itself goes to the pidfd, never to a number.
    """
    if pid in (0, 1, os.getpid()):
        raise ActionFailed(f"refusing to kill pid {pid} (init or the agent itself)")
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        raise ActionFailed(f"no process with pid {pid} is running") from None
    try:
        if created is not None:
            try:
                started = start_time(pid)
            except ProcessLookupError:
                raise ActionFailed(f"process {pid} exited before it could be checked") from None
            if abs(started - created.timestamp()) > START_TIME_TOLERANCE:
                raise ActionFailed(
                    f"pid {pid} now belongs to a process started at {datetime.fromtimestamp(started).isoformat()},"
                    f" not the one started at {created.isoformat()}; the pid was reused, nothing was killed")
        try:
            signal.pidfd_send_signal(fd, sig)
        except ProcessLookupError:
            raise ActionFailed(f"process {pid} exited before it could be killed") from None
        # A pidfd becomes readable when the process exits.
        if not select.select([fd], [], [], wait)[0]:
            raise ActionFailed(f"process {pid} was signalled but had not exited after {wait:g} s")
    finally:
        os.close(fd)


def _kill(ctx: ActionContext, cmd: ActionCommand) -> Outcome:
    pid = int(cmd.parameters["ProcessId"])
    created = datetime.fromisoformat(str(cmd.parameters["ProcessCreationTime"]).replace("Z", "+00:00"))
    kill_exact(pid, created)
    return Outcome(f"process {pid} killed", {"ProcessId": pid})


HANDLERS = {"KillProcess": _kill}
