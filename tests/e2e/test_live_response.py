"""Live response with a real agent: a session, read-only verbs, getfile, a signed library script, remediate/undo."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.agent_support import AgentProcess
from tests.e2e.response_support import finished
from tests.support import VigilServer

pytestmark = pytest.mark.root


def _run(c: httpx.Client, sid: int, line: str) -> dict[str, Any]:
    r = c.post(f"/api/liveresponse/sessions/{sid}/commands", json={"Command": line})
    assert r.status_code == 201, r.text
    a = r.json()
    return a if a.get("id") is None else finished(c, a["id"])


def test_a_live_response_session(sqlite_server: VigilServer, agent: AgentProcess, tmp_path: Path) -> None:
    evidence = tmp_path / "evidence.txt"
    evidence.write_text("exfil list\n")
    payload = tmp_path / "dropper"
    shutil.copy("/bin/true", payload)
    os.chmod(payload, 0o700)
    with sqlite_server.client(sqlite_server.admin_token()) as c:
        sid = c.post(f"/api/machines/{agent.device_id}/LiveResponse/sessions").json()["id"]
        assert c.post(f"/api/machines/{agent.device_id}/LiveResponse/sessions").json()["id"] == sid  # one per user
        procs = _run(c, sid, "processes")
        assert procs["status"] == "Succeeded" and "pid,ppid" in procs["output"]["text"]
        info = _run(c, sid, f"fileinfo {evidence}")
        assert info["output"]["sha256"] == hashlib.sha256(b"exfil list\n").hexdigest()
        got = _run(c, sid, f"getfile {evidence}")
        assert got["status"] == "Succeeded", got
        assert c.get(f"/api/liveresponse/commands/{got['id']}/download").content == b"exfil list\n"
        assert _run(c, sid, "help")["output"]["text"].startswith("help")
        assert c.post(f"/api/liveresponse/sessions/{sid}/commands", json={"Command": "rm -rf /"}).status_code == 422
        script = b"echo hello from $1; pwd\n"
        assert c.post("/api/liveresponse/library", json={
            "Name": "hello.sh", "ContentBase64": base64.b64encode(script).decode()}).status_code == 201
        ran = _run(c, sid, "run hello.sh vigil")
        assert ran["status"] == "Succeeded", ran
        assert ran["output"]["stdout"].startswith("hello from vigil\n" + str(agent.state_dir / "live-response"))
        fixed = _run(c, sid, f"remediate file {payload}")
        assert fixed["status"] == "Succeeded" and not payload.exists()
        undone = _run(c, sid, f"undo {fixed['id']}")
        assert undone["status"] == "Succeeded" and payload.exists()
        assert subprocess.run([str(payload)], check=False).returncode == 0
        log = c.get(f"/api/liveresponse/sessions/{sid}").json()["commands"]
        assert {a["requestorComment"] for a in log} >= {"processes", f"getfile {evidence}", "run hello.sh vigil"}
        assert c.post(f"/api/liveresponse/sessions/{sid}/close").json()["endedAt"]
        assert c.post(f"/api/liveresponse/sessions/{sid}/commands", json={"Command": "processes"}).status_code == 409
