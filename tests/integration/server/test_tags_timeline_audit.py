"""Device tags, the timeline and the audit log through the API and the CLI: one service behind both."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

from tests.support import VigilServer, enroll_raw, post_batch, process_event


def _vigil(server: VigilServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VIGIL_DATA_DIR": str(server.data_dir)}
    env.pop("VIGIL_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "vigil", *args, "--data-dir", str(server.data_dir)],
                          capture_output=True, text=True, env=env, timeout=120, check=False)


def test_tags_timeline_and_audit_agree_between_the_api_and_the_cli(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    dev = enroll_raw(server, server.onboarding_package()["token"], "tagged-01").json()
    device = dev["device_id"]
    events = [process_event(device, 1, Timestamp="2026-11-28T08:00:00Z"),
              process_event(device, 2, Timestamp="2026-11-28T10:00:00Z")]
    assert post_batch(server, dev["credential"], events).status_code == 200

    with server.client(server.admin_token()) as c:
        tagged = c.post(f"/api/machines/{device}/tags", json={"Value": "prod", "Action": "Add"})
        assert tagged.status_code == 200 and "prod" in tagged.json()["machineTags"]
        bad = c.post(f"/api/machines/{device}/tags", json={"Value": "bad\ttag", "Action": "Add"})
        assert bad.status_code == 422 and bad.json()["field"] == "Value"
        window = {"from": "2026-11-28T00:00:00Z", "to": "2026-11-29T00:00:00Z"}
        api_timeline = c.get(f"/api/machines/{device}/timeline", params=window).json()["value"]
        unknown = c.get(f"/api/machines/{device}/timeline", params={"table": "NoSuchTable"})
        assert unknown.status_code == 422 and unknown.json()["field"] == "table"

    cli_tag = _vigil(server, "devices", "tag", "tagged-01", "pci")
    assert cli_tag.returncode == 0, cli_tag.stderr
    assert cli_tag.stdout.split() == ["pci", "prod"]  # sorted, as machineTags
    refused = _vigil(server, "devices", "tag", "tagged-01", "bad\ttag")
    assert refused.returncode != 0 and "Value" in refused.stderr

    cli_timeline = _vigil(server, "devices", "timeline", device, "--from", window["from"], "--to", window["to"],
                          "--json")
    assert cli_timeline.returncode == 0, cli_timeline.stderr
    assert [(e["ReportId"], e["Timestamp"]) for e in json.loads(cli_timeline.stdout)] == [
        (e["ReportId"], e["Timestamp"]) for e in api_timeline] == [(2, "2026-11-28T10:00:00Z"),
                                                                  (1, "2026-11-28T08:00:00Z")]

    with server.client(server.admin_token()) as c:
        api_log = c.get("/api/audit", params={"action": "device.tags"}).json()["value"]
        assert c.get("/api/audit/verify").json()["ok"] is True
        exported = [json.loads(line) for line in c.get("/api/audit/export").text.splitlines()]
    # Newest first: the CLI's tag (audited as the OS user), then the API's (audited as the admin).
    assert [(e["actor"].split("@")[0].startswith("cli:"), e["after"]["tags"]) for e in api_log] == [
        (True, ["prod", "pci"]), (False, ["prod"])]
    assert api_log[0]["actor"].endswith("@" + socket.gethostname()) and api_log[1]["actor"].startswith("admin")
    assert [e["seq"] for e in exported] == sorted(e["seq"] for e in exported)
    assert {e["hash"] for e in api_log} <= {e["hash"] for e in exported}

    cli_log = _vigil(server, "audit", "list", "--action", "device.tags", "--json")
    assert cli_log.returncode == 0, cli_log.stderr
    assert [(e["seq"], e["hash"], e["at"]) for e in json.loads(cli_log.stdout)] == [
        (e["seq"], e["hash"], e["at"]) for e in api_log]
    verified = _vigil(server, "audit", "verify")
    assert verified.returncode == 0 and verified.stdout.startswith("ok:"), verified.stderr
