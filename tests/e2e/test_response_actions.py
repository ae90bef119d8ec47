"""A real agent carries out signed response actions: isolate (in a netns), kill, quarantine, package, scan."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.e2e.agent_support import AgentProcess, require_root, wait_for
from tests.e2e.response_support import finished, start
from tests.netns import MGMT_ADDR, OTHER_ADDR, netns_lab, require_netns
from tests.support import VigilServer
from vigil.agent.actions.base import ISOLATION_NETNS_ENV
from vigil.agent.actions.kill import start_time

pytestmark = pytest.mark.root


def _created(pid: int) -> str:
    return datetime.fromtimestamp(start_time(pid), UTC).isoformat().replace("+00:00", "Z")


def test_isolate_in_a_netns_then_release(
    sqlite_server: VigilServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_root()
    require_netns()
    with netns_lab() as lab:
        # The agent applies its real ruleset inside the lab's endpoint namespace instead of its own.
        monkeypatch.setenv(ISOLATION_NETNS_ENV, lab.ep)
        agent = AgentProcess.enroll(sqlite_server, tmp_path / "agent")
        agent.start()
        try:
            with sqlite_server.client(sqlite_server.admin_token()) as c:
                a = finished(c, start(c, agent.device_id, "isolate", IsolationType="Selective",
                                      AllowList=[f"{MGMT_ADDR}:8443"])["id"])
                assert a["status"] == "Succeeded", a
                assert f"127.0.0.1 port {sqlite_server.port}" in a["resultMessage"]
                assert lab.reachable(MGMT_ADDR, 8443)
                assert not lab.reachable(OTHER_ADDR, 80) and not lab.reachable(OTHER_ADDR, 8443)
                # The isolation survives an agent restart (and is re-applied if the ruleset was flushed).
                agent.stop()
                lab.run(lab.ep, "nft", "flush", "ruleset")
                agent.start()
                wait_for(lambda: "vigil_isolation" in lab.nft_tables(), 30, "isolation re-applied at start")
                assert not lab.reachable(OTHER_ADDR, 80)
                r = finished(c, c.post(f"/api/machineactions/{a['id']}/undo", json={"Comment": "clean"}).json()["id"])
                assert r["type"] == "Unisolate" and r["status"] == "Succeeded", r
                assert lab.reachable(OTHER_ADDR, 80)
                assert "vigil_isolation" not in lab.nft_tables()
                timeline = c.get(f"/api/machines/{agent.device_id}/timeline", params={"table": "DeviceEvents"})
                kinds = {e["ActionType"] for e in timeline.json()["value"]}
                assert "ResponseActionSucceeded" in kinds
        finally:
            agent.stop()


def test_kill_a_real_process_but_never_a_recycled_pid(sqlite_server: VigilServer, agent: AgentProcess) -> None:
    victim = subprocess.Popen(["sleep", "300"])
    try:
        with sqlite_server.client(sqlite_server.admin_token()) as c:
            wrong = "2001-01-01T00:00:00Z"  # the pid as it was, long ago: another process
            a = finished(c, start(c, agent.device_id, "killProcess", ProcessId=victim.pid,
                                  ProcessCreationTime=wrong)["id"])
            assert a["status"] == "Failed" and "reused" in a["resultMessage"]
            assert victim.poll() is None
            a = finished(c, start(c, agent.device_id, "killProcess", ProcessId=victim.pid,
                                  ProcessCreationTime=_created(victim.pid))["id"])
            assert a["status"] == "Succeeded", a
            assert victim.wait(5) == -9
    finally:
        victim.kill()
        victim.wait()


def test_quarantine_a_running_file_and_restore_it(
    sqlite_server: VigilServer, agent: AgentProcess, tmp_path: Path
) -> None:
    payload = tmp_path / "payload"
    shutil.copy("/bin/sleep", payload)
    os.chmod(payload, 0o751)  # noqa: S103 - an unusual mode, to prove restore keeps it
    digest = hashlib.sha256(payload.read_bytes()).hexdigest()
    running = subprocess.Popen([str(payload), "300"])
    try:
        with sqlite_server.client(sqlite_server.admin_token()) as c:
            a = finished(c, start(c, agent.device_id, "StopAndQuarantineFile", Sha256=digest, Path=str(payload))["id"])
            assert a["status"] == "Succeeded", a
            assert running.wait(5) == -9
            assert not payload.exists()
            vault = agent.state_dir / "quarantine"
            assert stat.S_IMODE(vault.stat().st_mode) == 0o700
            assert stat.S_IMODE((vault / a["id"]).stat().st_mode) == 0
            assert a["relatedFileInfo"] == {"fileIdentifier": digest, "fileIdentifierType": "Sha256"}
            r = finished(c, c.post(f"/api/machineactions/{a['id']}/undo", json={"Comment": "false positive"}
                                   ).json()["id"])
            assert r["type"] == "RestoreQuarantinedFile" and r["status"] == "Succeeded", r
            assert hashlib.sha256(payload.read_bytes()).hexdigest() == digest
            assert stat.S_IMODE(payload.stat().st_mode) == 0o751
    finally:
        running.kill()
        running.wait()


def test_collect_a_package_and_scan_for_a_planted_file(sqlite_server: VigilServer, agent: AgentProcess) -> None:
    with sqlite_server.client(sqlite_server.admin_token()) as c:
        a = finished(c, start(c, agent.device_id, "collectInvestigationPackage")["id"], timeout=120)
        assert a["status"] == "Succeeded" and a["packageAvailable"], a
        uri = c.get(f"/api/machineactions/{a['id']}/GetPackageUri").json()["value"]
        blob = c.get(uri).content
        assert hashlib.sha256(blob).hexdigest() == a["packageSha256"]
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
            names = set(tar.getnames())
            summary = tar.extractfile("CollectionSummaryReport.csv").read().decode()  # type: ignore[union-attr]
        for expected in ("network/ss.txt", "network/ip-addr.txt", "processes/processes.csv", "temp/tmp.txt",
                         "temp/dev-shm.txt", "users/accounts/etc/passwd", "users/accounts/etc/group",
                         "autoruns/systemd-unit-files.txt", "packages/dpkg.txt", "logs/auth.log"):
            assert expected in names, expected
        assert summary.startswith("item,kind,source,status,error,bytes")
        assert "autoruns/ld.so.preload" in summary  # collected or recorded as absent, never silently skipped
    planted = Path("/dev/shm") / f"vigil-e2e-{os.getpid()}.com"  # a quick-scan location
    planted.write_bytes("".join(("X5O!P%@AP[4\\PZX54(P^)7CC)7}$", "EICAR-STANDARD-", "ANTIVIRUS-TEST-FILE!$H+H*")
                                ).encode())  # EICAR, assembled here: never stored whole
    try:
        with sqlite_server.client(sqlite_server.admin_token()) as c:
            scan = finished(c, start(c, agent.device_id, "runAntiVirusScan", ScanType="Quick")["id"], timeout=300)
        assert scan["status"] == "Succeeded", scan
        assert "Virus:DOS/EICAR_Test_File" in scan["resultMessage"], scan
        assert str(planted) in {d["path"] for d in scan["output"]["detections"]}, scan["output"]
    finally:
        planted.unlink()
