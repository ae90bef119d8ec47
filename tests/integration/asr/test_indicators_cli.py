"""`vigil indicators` on a set-up data directory: add, import (a bad line reported, the rest saved), list --output
json, export and delete; what the CLI saves the API serves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support import VigilServer


def _vigil(server: VigilServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VIGIL_DATA_DIR": str(server.data_dir)}
    env.pop("VIGIL_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "vigil", "indicators", *args, "--data-dir", str(server.data_dir)],
                          capture_output=True, text=True, env=env, timeout=120, check=False)


def test_indicators_cli(sqlite_server: VigilServer, tmp_path: Path) -> None:
    made = _vigil(sqlite_server, "add", "203.0.113.9", "--type", "IpAddress", "--action", "Block", "--title", "c2",
                  "--severity", "High", "--output", "json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["indicatorValue"] == "203.0.113.9"
    bad = _vigil(sqlite_server, "add", "nope", "--type", "FileSha1", "--action", "Block", "--title", "x")
    assert bad.returncode == 2 and "indicatorValue" in bad.stderr

    csv_file = tmp_path / "batch.csv"
    csv_file.write_text("IndicatorType,IndicatorValue,ExpirationTime,Action,Severity,Title,Description,"
                        "RecommendedActions,RbacGroups,Category,MitreTechniques,GenerateAlert\n"
                        "DomainName,Evil.Example,,Block,Medium,bad domain,,,,,,TRUE\n"
                        "FileMd5,123,,Block,Medium,short hash,,,,,,FALSE\n")
    imported = _vigil(sqlite_server, "import", str(csv_file), "--output", "json")
    assert imported.returncode == 2, imported.stderr
    rows = json.loads(imported.stdout)
    assert [r["isFailed"] for r in rows] == [False, True] and rows[1]["failureReason"].startswith("line 3: ")

    listed = json.loads(_vigil(sqlite_server, "list", "--output", "json").stdout)
    assert [(i["indicatorType"], i["indicatorValue"]) for i in listed] == [
        ("IpAddress", "203.0.113.9"), ("DomainName", "evil.example")]
    exported = _vigil(sqlite_server, "export").stdout
    assert exported.splitlines()[0].startswith("IndicatorType,IndicatorValue,") and "evil.example" in exported

    assert _vigil(sqlite_server, "delete", listed[0]["id"]).returncode == 0
    assert _vigil(sqlite_server, "delete", listed[0]["id"]).returncode == 3
    with sqlite_server.client(sqlite_server.admin_token()) as c:
        assert [i["indicatorValue"] for i in c.get("/api/indicators").json()["value"]] == ["evil.example"]
        audited = [e["actor"] for e in c.get("/api/audit", params={"action": "indicator.delete"}).json()["value"]]
        assert audited and audited[0].startswith("cli:")


def test_asr_policy_cli_sets_one_mode_and_a_file_and_refuses_a_bad_mode(sqlite_server: VigilServer,
                                                                         tmp_path: Path) -> None:
    def asr(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "VIGIL_DATA_DIR": str(sqlite_server.data_dir)}
        env.pop("VIGIL_DATABASE_URL", None)
        return subprocess.run([sys.executable, "-m", "vigil", "asr", "policy", *args, "--data-dir",
                               str(sqlite_server.data_dir)], capture_output=True, text=True, env=env, timeout=120,
                              check=False)

    policy = tmp_path / "p.json"
    policy.write_text(json.dumps({"modes": {"CredentialStoreRead": "Audit"}, "exclusions": [{"pattern": "/opt/*"}]}))
    done = asr("set", "default", str(policy), "--output", "json")
    assert done.returncode == 0, done.stderr
    switched = json.loads(asr("mode", "default", "ExecFromTempOrRemovable", "Warn", "--output", "json").stdout)
    assert sorted(switched["modes"].values()) == [2, 6] and switched["version"] == 2
    assert asr("mode", "default", "ExecFromTempOrRemovable", "Loud").returncode == 2
    shown = json.loads(asr("show", "default", "--output", "json").stdout)
    assert shown["exclusions"] == [{"pattern": "/opt/*", "kind": "path"}]
