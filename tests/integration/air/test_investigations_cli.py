"""`vigil investigations start|list|show|cancel --output json` on a server's data directory: the same service,
the same results and refusals as the API."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.integration.air.test_investigations_api import _events
from tests.support import VigilServer, enroll_raw, post_batch


def _vigil(server: VigilServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VIGIL_DATA_DIR": str(server.data_dir)}
    env.pop("VIGIL_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "vigil", "investigations", *args, "--data-dir",
                           str(server.data_dir)], capture_output=True, text=True, env=env, timeout=120, check=False)


def test_start_list_show_cancel_from_the_cli(sqlite_server: VigilServer) -> None:
    srv = sqlite_server
    dev = dict(enroll_raw(srv, srv.onboarding_package()["token"], "cli-air").json())
    assert post_batch(srv, dev["credential"], _events(dev["device_id"], 100)).status_code == 200
    with srv.client(srv.admin_token()) as c:
        assert c.put("/api/machinegroups/Ungrouped devices (default)",
                     json={"automationLevel": "SemiRemediation"}).status_code == 200
    done = _vigil(srv, "start", "--machine", dev["device_id"], "--output", "json")
    assert done.returncode == 0, done.stderr
    inv = json.loads(done.stdout)
    assert inv["state"] == "PendingApproval" and inv["triggeredBy"] == "Device"
    assert [(r["kind"], r["outcome"]) for r in inv["remediations"]] == [("QuarantineFile", "PendingApproval")]
    with srv.client(srv.admin_token()) as c:
        action = c.get(f"/api/machineactions/{inv['remediations'][0]['machineActionId']}").json()
        assert action["approval"] == "PendingApproval"  # signed by the server's key when approved
    listed = json.loads(_vigil(srv, "list", "--output", "json").stdout)
    assert [i["id"] for i in listed] == [inv["id"]]
    shown = json.loads(_vigil(srv, "show", inv["id"], "--output", "json").stdout)
    assert shown["verdicts"] == inv["verdicts"]
    cancelled = _vigil(srv, "cancel", inv["id"], "--comment", "test", "--output", "json")
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["state"] == "TerminatedByUser"
    again = _vigil(srv, "cancel", inv["id"])
    assert again.returncode != 0 and "already TerminatedByUser" in again.stderr
    missing = _vigil(srv, "show", "999")
    assert missing.returncode != 0 and "no investigation with id 999" in missing.stderr
