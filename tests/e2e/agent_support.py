"""A real `vigil agent` process enrolled to a test server, and helpers to find its events."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import VigilServer


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the agent's sensors (proc connector, audit) need root")


@dataclass
class AgentProcess:
    state_dir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.state_dir / "agent-test.log"

    @classmethod
    def enroll(cls, server: VigilServer, state_dir: Path, **package: Any) -> AgentProcess:
        state_dir.mkdir(parents=True, exist_ok=True)
        pkg = state_dir.parent / f"{state_dir.name}-onboarding.json"
        pkg.write_text(json.dumps(server.onboarding_package(**package)))
        done = subprocess.run(
            [sys.executable, "-m", "vigil", "agent", "enroll", str(pkg), "--state-dir", str(state_dir)],
            capture_output=True, text=True, timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return cls(state_dir)

    @property
    def device_id(self) -> str:
        return str(json.loads((self.state_dir / "identity.json").read_text())["device_id"])

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vigil", "agent", "run", "--state-dir", str(self.state_dir),
                 "--heartbeat-seconds", "1", "--batch-seconds", "0.2"],
                stdout=log, stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def process_events(server: VigilServer, token: str, device_id: str) -> list[dict[str, Any]]:
    with server.client(token) as c:
        r = c.get(
            f"/api/machines/{device_id}/timeline",
            params={"table": "DeviceProcessEvents", "limit": 10000},
        )
        r.raise_for_status()
        return [e for e in r.json()["value"] if e["ActionType"] == "ProcessCreated"]
