"""ASR and indicators end to end: the admin sets a policy and an indicator on a real server, the enrolled agent
(real sensors, as root) receives the signed bundle and enforces it on real processes and a real connect in a
network namespace: Block terminates (reported as Terminated), Audit records only, an exclusion exempts, Off does
nothing, and the IP indicator blocks the connect.

The agent watches every process on the machine, so the policy fences itself in: everything outside /dev/shm is
excluded, and the test's executable lives in its own /dev/shm folder. The on-access gate is pointed at a tmpfs of
its own, so the exec in /dev/shm goes through and this test exercises the after-the-fact path (the pre-exec denial
is tests/integration/agent/test_protection_gate.py's)."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.agent.support import wait_for
from tests.integration.agent.test_runner import rows, write_package
from tests.integration.server.rbac_support import admin
from tests.netns import OTHER_ADDR, netns_lab, require_netns
from tests.support import VigilServer
from vigil.agent.actions.base import ISOLATION_NETNS_ENV
from vigil.agent.config import AgentConfig
from vigil.agent.enroll import enroll
from vigil.agent.runner import build_agent
from vigil.asr import AsrMode, find

pytestmark = pytest.mark.root
RULE = find("ExecFromTempOrRemovable")


@pytest.fixture
def napper() -> Iterator[Path]:
    folder = Path("/dev/shm") / f"vigil-asr-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    target = folder / "napper"
    shutil.copy("/usr/bin/sleep", target)
    try:
        yield target
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def gate_mount(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "gate"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fence() -> list[dict[str, str]]:
    return [{"pattern": f"/{d}/*"} for d in sorted(os.listdir("/")) if d != "dev"] + [{"pattern": "/dev/[!s]*"}]


def _events(srv: VigilServer, action: str, pid: int) -> list[dict[str, Any]]:
    return [r for r in rows(srv, "DeviceEvents") if r["ActionType"] == action and r["ProcessId"] == pid]


def test_policy_and_indicator_enforced_by_the_agent(sqlite_server: VigilServer, tmp_path: Path,
                                                    napper: Path, gate_mount: Path) -> None:
    require_netns()
    srv = sqlite_server
    state = tmp_path / "agent"
    enroll(write_package(srv, tmp_path / "pkg.json"), state)
    with netns_lab() as lab:
        agent = build_agent(AgentConfig(state_dir=state, heartbeat_seconds=0.5, batch_seconds=0.2),
                            environ={ISOLATION_NETNS_ENV: lab.ep})
        assert agent.protection is not None
        agent.protection.poll_seconds = 0.5
        agent.protection.gate_marks = (str(gate_mount),)
        health = agent.start()
        try:
            if health["process"].state == "unavailable":
                pytest.skip(f"no process sensor here: {health['process']}")
            protection = agent.protection

            def applied(version: int, mode: AsrMode) -> bool:
                b = protection.bundle
                return b is not None and b.revision.startswith(f"default:{version},") and \
                    b.policies.mode(RULE.guid, b.group_id) is mode

            with admin(srv) as c:
                r = c.put("/api/asr/policies/default", json={"modes": {RULE.name: "Block"}, "exclusions": _fence()})
                assert r.status_code == 200, r.text
                r = c.post("/api/indicators", json={"indicatorValue": OTHER_ADDR, "indicatorType": "IpAddress",
                                                    "action": "Block", "title": "lab c2"})
                assert r.status_code == 201, r.text
            assert wait_for(lambda: applied(1, AsrMode.BLOCK) and len(protection.bundle.indicators) == 1,  # type: ignore[union-attr]
                            timeout=30)

            assert not lab.reachable(OTHER_ADDR, 80)
            blocked = subprocess.Popen([str(napper), "30"])
            assert wait_for(lambda: blocked.poll() is not None, timeout=20), "Block did not stop the process"
            assert blocked.returncode == -9
            assert wait_for(lambda: _events(srv, f"Asr{RULE.name}Terminated", blocked.pid), timeout=20)
            assert not _events(srv, f"Asr{RULE.name}Blocked", blocked.pid)  # after the exec: never "Blocked"
            assert wait_for(lambda: any(r["ActionType"] == "ExploitGuardNetworkProtectionBlocked"
                                        and r["RemoteIP"] == OTHER_ADDR for r in rows(srv, "DeviceEvents")),
                            timeout=20)

            with admin(srv) as c:
                assert c.put(f"/api/asr/policies/default/rules/{RULE.guid}", json={"mode": "Audit"}).status_code == 200
            assert wait_for(lambda: applied(2, AsrMode.AUDIT), timeout=30)
            audited = subprocess.Popen([str(napper), "0.5"])
            assert audited.wait(10) == 0  # Audit lets it run
            assert wait_for(lambda: _events(srv, f"Asr{RULE.name}Audited", audited.pid), timeout=20)

            with admin(srv) as c:
                body = {"modes": {RULE.name: "Block"}, "exclusions": _fence(),
                        "ruleExclusions": {RULE.name: [{"pattern": f"{napper.parent}/*"}]}}
                assert c.put("/api/asr/policies/default", json=body).status_code == 200
            assert wait_for(lambda: applied(3, AsrMode.BLOCK), timeout=30)
            exempt = subprocess.Popen([str(napper), "1"])
            assert exempt.wait(10) == 0

            with admin(srv) as c:
                assert c.put(f"/api/asr/policies/default/rules/{RULE.guid}", json={"mode": "Off"}).status_code == 200
            assert wait_for(lambda: applied(4, AsrMode.OFF), timeout=30)
            off = subprocess.Popen([str(napper), "1"])
            assert off.wait(10) == 0
            assert wait_for(lambda: agent.spool.depth() == 0, timeout=20)
        finally:
            agent.stop()

    names = {r["ActionType"] for r in rows(srv, "DeviceEvents") if r["ProcessId"] in (exempt.pid, off.pid)}
    assert not {n for n in names if n.startswith("Asr")}
