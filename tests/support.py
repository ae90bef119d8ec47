"""Test support: a real Vigil server process on loopback, with its data directory and credentials."""

from __future__ import annotations

import gzip
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from vigil.core.clock import SystemClock
from vigil.deploy.setup import run_setup

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PortTaken(Exception):
    pass


@dataclass
class VigilServer:
    """`vigil server` as a child process; start, stop and restart it like an operator would."""

    data_dir: Path
    db_url: str
    port: int
    admin_password: str
    proc: subprocess.Popen[bytes] | None = None
    started_once: bool = False
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.data_dir / "server.log"

    @classmethod
    def create(cls, data_dir: Path, db_url: str) -> VigilServer:
        port = free_port()
        overrides: dict[str, object] = {"listen_port": port, "enroll_rate_per_minute": 1000}
        if db_url:
            overrides["database_url"] = db_url
        report = run_setup(data_dir, SystemClock(), overrides=overrides)
        assert report.admin_password
        return cls(data_dir, db_url, port, report.admin_password)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.data_dir / "pki" / "ca.pem"))

    def start(self) -> None:
        """Start the server; if its port was taken meanwhile (and it never ran), move to a free one."""
        for _ in range(5):
            try:
                return self._start()
            except PortTaken:
                if self.started_once:
                    raise
                toml = self.data_dir / "vigil.toml"
                new = free_port()
                toml.write_text(toml.read_text().replace(f"listen_port = {self.port}", f"listen_port = {new}"))
                self.port = new
        raise RuntimeError("no free port found")

    def _start(self) -> None:
        env = {**os.environ, "VIGIL_DATA_DIR": str(self.data_dir)}
        env.pop("VIGIL_DATABASE_URL", None)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vigil", "server", "--data-dir", str(self.data_dir)],
                stdout=log, stderr=subprocess.STDOUT, env=env,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if "address already in use" in self.log.read_text():
                    self.log.write_text("")
                    raise PortTaken()
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/api/health", verify=self.ca, timeout=1).status_code == 200:
                    self.started_once = True
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not become healthy:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, verify=self.ca, headers=headers, timeout=30)

    def admin_token(self) -> str:
        with self.client() as c:
            r = c.post("/api/auth/login", json={"username": "admin", "password": self.admin_password})
            r.raise_for_status()
            return str(r.json()["access_token"])

    def onboarding_package(self, **body: Any) -> dict[str, Any]:
        with self.client(self.admin_token()) as c:
            r = c.post("/api/onboarding/packages", json=body)
            r.raise_for_status()
            return dict(r.json())


def enroll_raw(server: VigilServer, token: str, hostname: str = "test-host") -> httpx.Response:
    with server.client() as c:
        return c.post(
            "/agent/v1/enroll",
            json={"token": token, "hostname": hostname, "os_platform": "Linux", "agent_version": "test"},
        )


def process_event(device_id: str, seq: int, **cols: Any) -> dict[str, Any]:
    row = {
        "table": "DeviceProcessEvents",
        "Timestamp": "2026-11-28T09:00:00.000001Z",
        "DeviceId": device_id,
        "DeviceName": "test-host",
        "ActionType": "ProcessCreated",
        "ReportId": seq,
        "FileName": "true",
        "FolderPath": "/usr/bin/true",
        "ProcessId": 1000 + seq,
        "ProcessCommandLine": f"/bin/true {seq}",
    }
    row.update(cols)
    return row


def post_batch(
    server: VigilServer, credential: str, events: list[dict[str, Any]], batch_id: str | None = None,
    compress: bool = True,
) -> httpx.Response:
    body = orjson.dumps({"batch_id": batch_id or uuid.uuid4().hex, "events": events})
    headers = {"Content-Type": "application/json"}
    if compress:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    with server.client(credential) as c:
        return c.post("/agent/v1/telemetry", content=body, headers=headers)
