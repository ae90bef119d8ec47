"""Definitions and policy per device group from a real server to an enrolled agent's state, through the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from tests.integration.agent.conftest import ListSink
from tests.integration.agent.test_runner import write_package
from tests.integration.server.rbac_support import admin, make_user, token_of
from tests.support import VigilServer, enroll_raw
from vigil.agent.antivirus import local_exclusions, served_policy
from vigil.agent.clock import SystemClock
from vigil.agent.config import AgentConfig
from vigil.agent.enroll import enroll
from vigil.agent.sensors.antivirus import AntivirusSensor
from vigil.agent.sensors.base import SensorContext
from vigil.av.bundle import InstalledDefinitions


def _vigil(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIGIL_AV_PUBLIC_KEY", "VIGIL_DATA_DIR")}
    return subprocess.run([sys.executable, "-m", "vigil", "av", *args], capture_output=True, text=True, timeout=120,
                          env=env, check=False)


def _ok(*args: str) -> dict[str, object]:
    r = _vigil(*args, "--output", "json")
    assert r.returncode == 0, r.stderr
    out: dict[str, object] = json.loads(r.stdout)
    return out


def test_the_server_serves_its_groups_policy_and_newer_bundles_to_enrolled_agents(
        sqlite_server: VigilServer, tmp_path: Path) -> None:
    data = str(sqlite_server.data_dir)
    state = tmp_path / "agent"
    enroll(write_package(sqlite_server, tmp_path / "pkg.json"), state)
    listed = tmp_path / "listed.bin"
    listed.write_bytes(b"served-by-the-server " * 10)
    hashes = tmp_path / "hashes.txt"
    hashes.write_text(f"{hashlib.sha256(listed.read_bytes()).hexdigest()} Linux/Served\n")
    for version in ("100", "200"):
        _ok("bundle", "build", "--hashes", str(hashes), "--version", version, "--data-dir", data,
            "--out", str(tmp_path / f"v{version}.vab"))
    assert _ok("bundle", "publish", str(tmp_path / "v100.vab"), "--data-dir", data)["version"] == 100
    _ok("policy", "set", "--data-dir", data, "--realtime", "on", "--mode", "audit", "--exclude", "folder:/srv/big",
        "--scan", "quick@02:30@sat,sun")

    first = _ok("definitions", "update", "--state-dir", str(state))
    assert (first["installed_now"], first["installed_version"], first["served_version"]) == (True, 100, 100)
    assert first["policy"] == {"realtime": True, "mode": "audit", "exclusions": {"folder": ["/srv/big/"]},
                               "scans": [{"type": "quick", "at": "02:30", "days": ["sat", "sun"]}]}
    again = _ok("definitions", "update", "--state-dir", str(state))
    assert again["installed_now"] is False and again["installed_version"] == 100
    scanned = _vigil("scan", "custom", str(listed), "--state-dir", str(state), "--output", "json")
    assert scanned.returncode == 1 and json.loads(scanned.stdout)["detections"][0]["name"] == "Trojan:Linux/Served"

    # Older and tampered bundles are refused at publication; a newer one reaches the agent.
    older = _vigil("bundle", "publish", str(tmp_path / "v100.vab"), "--data-dir", data)
    assert older.returncode == 2 and "not newer than the published 100" in older.stderr
    tampered = tmp_path / "tampered.vab"
    raw = bytearray((tmp_path / "v200.vab").read_bytes())
    raw[-5] ^= 1
    tampered.write_bytes(bytes(raw))
    refused = _vigil("bundle", "publish", str(tampered), "--data-dir", data)
    assert refused.returncode == 2 and "altered" in refused.stderr
    _ok("bundle", "publish", str(tmp_path / "v200.vab"), "--data-dir", data)
    assert _ok("definitions", "update", "--state-dir", str(state))["installed_version"] == 200
    assert InstalledDefinitions(state / "av" / "definitions").previous.exists()  # kept for rollback

    # The policy reaches the running agent: exclusions unite with the local ones, the group's scan is scheduled.
    assert served_policy(state).realtime is True
    assert local_exclusions(state).file("/srv/big/x.iso")
    sensor = AntivirusSensor(SensorContext(sink=ListSink(), clock=SystemClock(),
                                           config=AgentConfig(state_dir=state, av_marks=(str(tmp_path),))),
                             now=lambda: datetime(2026, 12, 5, 2, 30))  # a Saturday, at 02:30
    assert sensor._wanted_now().realtime is True and sensor._wanted_now().mode_setting == "audit"
    sensor.scanning.acquire()  # the scan itself is not the point here: only that it is due once
    try:
        assert sensor.run_due_scans() == ["quick"] and sensor.run_due_scans() == []
    finally:
        sensor.scanning.release()

    audit = _ok("policy", "show", "--data-dir", data)
    assert audit["global"]["mode"] == "audit"  # type: ignore[index]

    # The API: the same stored policy, per group; a change goes to the devices signed, in the protection bundle.
    dev = dict(enroll_raw(sqlite_server, sqlite_server.onboarding_package()["token"], "av-policy-host").json())
    with admin(sqlite_server) as c:
        listed = c.get("/api/antivirus/policies").json()["value"]
        assert listed[0]["rbacGroupName"] == "default" and listed[0]["policy"]["mode"] == "audit"
        r = c.put("/api/antivirus/policies/default/mode", json={"mode": "passive"})
        assert r.status_code == 200, r.text
        assert (r.json()["version"], r.json()["policy"]["mode"], r.json()["policy"]["realtime"]) == (2, "passive", True)
        assert r.json()["devicesUpdated"] == 2
        bad = c.put("/api/antivirus/policies/default", json={"threat_actions": {"malware": "explode"}})
        assert bad.status_code == 422 and bad.json()["field"] == "threat_actions", bad.text
        assert c.put("/api/antivirus/policies/No such group", json={}).status_code == 404
        assert "av.policy.update" in [e["action"] for e in c.get("/api/audit", params={"$top": 20}).json()["value"]]
    with sqlite_server.client(dev["credential"]) as c:
        commands = c.post("/agent/v1/actions/poll", params={"wait": 0}).json()["commands"]
    assert [cmd["command"]["type"] for cmd in commands] == ["ApplyProtectionPolicy"] and commands[0]["signature"]
    assert commands[0]["command"]["parameters"]["Antivirus"]["mode"] == "passive"
    make_user(sqlite_server, "av-reader", role="read-only")
    with sqlite_server.client(token_of(sqlite_server, "av-reader")) as ro:
        assert ro.get("/api/antivirus/policies/default").json()["effective"]["mode"] == "passive"
        assert ro.put("/api/antivirus/policies/default/mode", json={"mode": "block"}).status_code == 403
