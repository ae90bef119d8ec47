"""A real server, a real enrolled agent, real processes: every exec arrives, once, with its facts."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.agent_support import AgentProcess, process_events, require_root, wait_for
from tests.support import VigilServer

pytestmark = pytest.mark.root


@pytest.fixture
def agent(server: VigilServer, tmp_path: Path) -> Iterator[AgentProcess]:
    require_root()
    a = AgentProcess.enroll(server, tmp_path / "agent")
    a.start()
    try:
        yield a
    finally:
        a.stop()


def _sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _wait_agent_ready(server: VigilServer, token: str, agent: AgentProcess) -> None:
    def ready() -> bool:
        with server.client(token) as c:
            m = c.get(f"/api/machines/{agent.device_id}").json()
        return str(m.get("sensorHealth", {}).get("process", "")).split(":")[0] in ("active", "degraded")

    wait_for(ready, 30, f"the agent's process sensor to report (log: {agent.log})")
    time.sleep(0.5)


def test_every_spawned_process_arrives_with_parent_command_line_and_hash(
    server: VigilServer, agent: AgentProcess
) -> None:
    token = server.admin_token()
    _wait_agent_ready(server, token, agent)
    marker = uuid.uuid4().hex[:12]
    for i in range(200):
        subprocess.run(["/bin/true", f"vigil-e2e-{marker}-{i}"], check=True)
    shell = subprocess.Popen(["sh", "-c", f"sleep 0.1; : vigil-e2e-{marker}-sh"])
    shell.wait()

    def arrived() -> list[dict[str, object]] | None:
        evs = [e for e in process_events(server, token, agent.device_id)
               if marker in str(e.get("ProcessCommandLine", "")) or (
                   e.get("FileName") == "sleep" and e.get("InitiatingProcessId") == shell.pid)]
        return evs if len(evs) >= 202 else None

    try:
        events = wait_for(arrived, 90, "202 process events")
    except AssertionError:
        seen = [e for e in process_events(server, token, agent.device_id) if marker in str(e)]
        raise AssertionError(f"only {len(seen)} of 202 arrived; agent log:\n{agent.log.read_text()[-3000:]}") from None

    true_sha = _sha256(os.path.realpath("/bin/true"))
    trues = [e for e in events if e["FileName"] == "true" and f"vigil-e2e-{marker}-" in str(e["ProcessCommandLine"])]
    got = sorted(e["ProcessCommandLine"] for e in trues)
    assert len(got) == 200, (len(got), [e for e in events if e not in trues][:3])
    assert got == sorted(
        f"/bin/true vigil-e2e-{marker}-{i}" for i in range(200)
    )
    for e in trues:
        assert e["ActionType"] == "ProcessCreated"
        assert e["InitiatingProcessId"] == os.getpid()
        assert e["SHA256"] == true_sha
        assert e["FolderPath"] == os.path.realpath("/bin/true")

    sh = [e for e in events if e.get("ProcessId") == shell.pid and e.get("FileName") in ("sh", "dash", "bash")]
    assert len(sh) == 1 and sh[0]["ProcessCommandLine"] == f"sh -c 'sleep 0.1; : vigil-e2e-{marker}-sh'"
    assert sh[0]["InitiatingProcessId"] == os.getpid()
    sleeps = [e for e in events if e.get("FileName") == "sleep" and e.get("InitiatingProcessId") == shell.pid]
    assert len(sleeps) == 1 and sleeps[0]["ProcessCommandLine"] == "sleep 0.1"
    assert sleeps[0]["SHA256"] == _sha256(os.path.realpath(sleeps[0]["FolderPath"]))
    assert sleeps[0]["InitiatingProcessFileName"] in ("sh", "dash", "bash")


def test_no_event_is_lost_while_the_server_is_down(server: VigilServer, agent: AgentProcess) -> None:
    token = server.admin_token()
    _wait_agent_ready(server, token, agent)
    marker = uuid.uuid4().hex[:12]
    spawned = 0
    for phase in range(3):
        if phase == 1:
            server.stop()  # mid-stream: the agent must spool and resend
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            subprocess.run(["/bin/true", f"vigil-loss-{marker}-{spawned}"], check=True)
            spawned += 1
            time.sleep(0.01)
        if phase == 1:
            time.sleep(2)
            server.start()
    token = server.admin_token()

    def stored() -> Counter[str] | None:
        c = Counter(str(e["ProcessCommandLine"]) for e in process_events(server, token, agent.device_id)
                    if f"vigil-loss-{marker}-" in str(e.get("ProcessCommandLine", "")))
        return c if sum(c.values()) >= spawned else None

    counts = wait_for(stored, 120, f"{spawned} events after the outage")
    assert sum(counts.values()) == spawned
    assert set(counts.values()) == {1}, "an event was stored twice"
