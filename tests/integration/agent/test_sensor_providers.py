"""A real `vigil agent run` says which provider each sensor runs on and why: in `vigil agent health`, in the
sensors it reports to the server (the machine API) and on the portal's device page."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.agent_support import require_root
from tests.integration.agent.support import wait_for
from tests.integration.agent.test_runner import write_package
from tests.support import VigilServer

VIGIL = [sys.executable, "-m", "vigil", "agent"]
PROCESS_PROVIDERS = {"ebpf", "proc_connector", "audit"}
NETWORK_PROVIDERS = {"ebpf", "audit", "socket_table"}


@contextmanager
def _running(server: VigilServer, tmp_path: Path, config: str = "") -> Iterator[Path]:
    state = tmp_path / "agent"
    done = subprocess.run([*VIGIL, "enroll", str(write_package(server, tmp_path / "pkg.json")), "--state-dir",
                           str(state)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    conf = tmp_path / "agent.toml"
    conf.write_text(config)
    proc = subprocess.Popen([*VIGIL, "run", "--config", str(conf), "--state-dir", str(state), "--heartbeat-seconds",
                             "0.5", "--batch-seconds", "0.2"], stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: _health(state)["last_heartbeat_at"], 30), "no heartbeat"
        yield state
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "sensor process runs on provider" in err, err[-3000:]


def _health(state: Path) -> dict[str, Any]:
    out = subprocess.run([*VIGIL, "health", "--state-dir", str(state), "--output", "json"],
                         capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout))


def _reported(c: httpx.Client, device_id: str) -> dict[str, str]:
    """The sensors the agent's heartbeats reported, as the machine API shows them."""
    assert wait_for(lambda: "process" in c.get(f"/api/machines/{device_id}").json()["sensorHealth"], 15)
    return dict(c.get(f"/api/machines/{device_id}").json()["sensorHealth"])


def _device_page(server: VigilServer, device_id: str) -> str:
    with server.client() as c:
        c.get("/login")
        r = c.post("/login", data={"username": "admin", "password": server.admin_password,
                                   "csrf": c.cookies["vigil_csrf"]})
        assert r.status_code in (200, 303), r.text
        page = c.get(f"/devices/{device_id}")
        assert page.status_code == 200, page.text
        return page.text


def test_health_api_and_device_page_name_each_sensors_provider_and_why(
        sqlite_server: VigilServer, tmp_path: Path) -> None:
    require_root()
    with _running(sqlite_server, tmp_path) as state:
        health = _health(state)
        providers = health["providers"]
        assert providers.keys() >= {"process", "network", "logon", "system_log"}, providers
        process, network = providers["process"], providers["network"]
        assert process["provider"] in PROCESS_PROVIDERS and process["why"], process
        assert network["provider"] in NETWORK_PROVIDERS and network["why"], network
        for chosen in (process, network):
            if chosen["provider"] == "ebpf":  # the package's own object, unless the settings name another
                assert chosen["why"].startswith("shipped CO-RE object "), chosen
            else:
                assert chosen["why"].startswith(("eBPF unavailable", "eBPF not tried")), chosen
        field = subprocess.run([*VIGIL, "health", "--state-dir", str(state), "--field", "providers.process.provider"],
                               capture_output=True, text=True, check=True)
        assert field.stdout.strip() == process["provider"]
        table = subprocess.run([*VIGIL, "health", "--state-dir", str(state)], capture_output=True, text=True,
                               check=True).stdout
        assert "providers.process.provider" in table and "providers.network.why" in table, table
        device_id = health["device_id"]
        with sqlite_server.client(sqlite_server.admin_token()) as c:
            reported = _reported(c, device_id)
        expected = {"ebpf": "provider eBPF", "proc_connector": "provider proc connector", "audit": "provider audit"}
        assert expected[process["provider"]] in reported["process"], reported
        if process["provider"] == "ebpf":
            assert process["why"] in reported["process"], reported  # the object it came from
        page = _device_page(sqlite_server, device_id)
        assert expected[process["provider"]] in page


def test_without_the_object_the_process_sensor_says_it_fell_back_and_why(
        sqlite_server: VigilServer, tmp_path: Path) -> None:
    require_root()
    missing = tmp_path / "nowhere" / "process.bpf.o"
    with _running(sqlite_server, tmp_path, f'bpf_object_path = "{missing}"\n') as state:
        health = _health(state)
        process = health["providers"]["process"]
        assert process["provider"] in {"proc_connector", "audit"}, process
        assert process["why"].startswith(f"eBPF unavailable: open {missing}: No such file or directory"), process
        assert "not shipped and not built here" in process["why"] and "clang" in process["why"], process
        assert health["sensors"]["process"].startswith(("active: provider ", "degraded: provider ")), health
        with sqlite_server.client(sqlite_server.admin_token()) as c:
            reported = _reported(c, health["device_id"])
        assert str(missing) in reported["process"] and "not built here" in reported["process"], reported
