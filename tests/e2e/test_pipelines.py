"""Pipelines typed into a real interactive shell (bash -i on a pty) raise alerts naming every member process."""

from __future__ import annotations

import base64
import http.server
import json
import os
import pty
import select
import threading
import time
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


def _members(value: Any) -> list[dict[str, Any]]:
    """PipelineMembers as evidence carries it (a dynamic column: JSON text once stored)."""
    return list(json.loads(value) if isinstance(value, str) else value)


def _serve(root: Path) -> http.server.ThreadingHTTPServer:
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(root))  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def test_typed_pipelines_raise_alerts_listing_every_member(
    sqlite_server: VigilServer, agent: AgentProcess, tmp_path: Path
) -> None:
    server, token = sqlite_server, sqlite_server.admin_token()

    def ready() -> bool:
        with server.client(token) as c:
            m = c.get(f"/api/machines/{agent.device_id}").json()
        return "eBPF" in str(m.get("sensorHealth", {}).get("process", ""))

    wait_for(ready, 30, f"the agent's process sensor on eBPF (log: {agent.log})")
    marker = uuid.uuid4().hex[:10]
    (tmp_path / f"i-{marker}.sh").write_text("true\n")
    httpd = _serve(tmp_path)
    url = f"http://127.0.0.1:{httpd.server_address[1]}/i-{marker}.sh"
    typed = {
        "Base64 Decoded Into a Shell": f"echo {base64.b64encode(b'true').decode()} | base64 -d | sh",
        "Download Piped Into a Shell": f"curl -s {url} | sh",
        "wget": f"wget -q -O- {url} | bash",
    }
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp("bash", ["bash", "--norc", "--noprofile", "-i"])  # noqa: S606 (the real interactive shell under test)
    try:
        time.sleep(0.5)
        for line in typed.values():
            os.write(fd, line.encode() + b"\n")
            time.sleep(0.3)
        end = time.monotonic() + 2
        while time.monotonic() < end:
            if select.select([fd], [], [], 0.1)[0]:
                os.read(fd, 4096)

        def found() -> dict[str, list[dict[str, Any]]] | None:
            # An alert gathers repeated hits of its rule: the curl and wget pipelines share one.
            lines = {
                e["ProcessCommandLine"]: _members(e["PipelineMembers"])
                for a in _alerts(server, token)
                for e in a["evidence"]
                if e.get("ActionType") == "PipelineCreated" and e.get("InitiatingProcessId") == pid
            }
            return lines if len(lines) >= 3 else None

        lines = wait_for(found, 30, f"alerts for the three pipelines of bash {pid} (agent log: {agent.log})")
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        httpd.shutdown()
    assert "[bash builtin] | base64 -d | sh" in lines
    assert [m["ProcessCommandLine"] for m in lines[f"curl -s {url} | sh"]] == [f"curl -s {url}", "sh"]
    assert [m["ProcessCommandLine"] for m in lines[f"wget -q -O- {url} | bash"]] == [f"wget -q -O- {url}", "bash"]
    assert len(lines["[bash builtin] | base64 -d | sh"]) == 3
