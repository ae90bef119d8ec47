"""`vigil up` as a real process: it prints the next steps with its data dir filled in, and SIGTERM stops its local
agent too (uvicorn re-raises SIGTERM after its shutdown; the default handler used to kill `vigil up` before it
stopped the agent, which was left running under PID 1)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import VigilServer


def _children(pid: int) -> dict[int, str]:
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found[int(entry.name)] = cmdline
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _agent_of(up: subprocess.Popen[bytes], log: Path, timeout: float = 90) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert up.poll() is None, log.read_text()
        agents = [pid for pid, cmd in _children(up.pid).items() if " agent run " in f"{cmd} "]
        if agents and "Local agent started" in log.read_text():
            return agents[0]
        time.sleep(0.2)
    raise AssertionError(f"no local agent after {timeout} s:\n{log.read_text()}")


@pytest.mark.skipif(os.geteuid() != 0, reason="the local agent's sensors need root")
def test_sigterm_to_vigil_up_stops_its_local_agent_too(tmp_path: Path) -> None:
    data = tmp_path / "var"
    VigilServer.create(data, "")  # set up on a free port, as `vigil up` would on first start
    log = tmp_path / "up.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    with log.open("wb") as out:
        up = subprocess.Popen([sys.executable, "-m", "vigil", "up", "--data-dir", str(data)], stdout=out,
                              stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    try:
        agent = _agent_of(up, log)
        up.send_signal(signal.SIGTERM)
        up.wait(60)
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
    text = log.read_text()
    left = _running(agent)
    if left:
        os.kill(agent, signal.SIGKILL)  # not left behind for the rest of the run
    assert not left, f"the agent {agent} outlived `vigil up`:\n{text}"
    assert up.returncode == 128 + signal.SIGTERM, text
    assert f"devices list --data-dir {data}" in text and f"agent health --state-dir {data / 'agent'}" in text
