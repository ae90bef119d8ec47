"""`vigil integrations` on a set-up data directory: destinations and their status, apps and sources, as JSON."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tests.support import VigilServer
from vigil.cli import app
from vigil.commands._common import CommandError


def _run(*args: str) -> tuple[int, str]:
    """The exit code and output, as `vigil.cli.main` turns a refusal into its message and exit code."""
    r = CliRunner().invoke(app, ["integrations", *args])
    if isinstance(r.exception, CommandError):
        return r.exception.exit_code, str(r.exception)
    return r.exit_code, r.stdout


def test_integrations_cli_configures_and_reports_as_json(tmp_path: Path) -> None:
    server = VigilServer.create(tmp_path / "s", "")
    d = ["--data-dir", str(server.data_dir)]
    code, out = _run("destinations", "add", "siem", "--type", "syslog", "--table", "DeviceProcessEvents",
                     "--table", "AlertInfo", "--set", "host=127.0.0.1", "--set", "port=6514", "--set", "format=leef",
                     "--output", "json", *d)
    assert code == 0, out
    created = json.loads(out)[0]
    assert created["settings"] == {"host": "127.0.0.1", "port": 6514, "format": "leef"}
    code, out = _run("destinations", "add", "bad", "--type", "syslog", "--table", "DeviceProcessEvents",
                     "--set", "host=h", "--set", "transport=carrier-pigeon", *d)
    assert code == 2 and "settings.transport" in out
    code, out = _run("destinations", "add", "hec", "--type", "splunk_hec", "--table", "AlertInfo",
                     "--set", "url=https://splunk.example:8088/services/collector", "--set", "token=hec-secret",
                     "--output", "json", *d)
    assert code == 0 and json.loads(out)[0]["settings"]["token"] == "********"
    assert _run("destinations", "disable", "hec", *d)[0] == 0
    code, out = _run("status", "--output", "json", *d)
    status = {s["name"]: s for s in json.loads(out)}
    assert status["siem"]["enabled"] is True and status["hec"]["enabled"] is False
    assert status["siem"]["lag"] == 0 and status["siem"]["recordsSent"] == 0
    assert "hec-secret" not in out

    code, out = _run("apps", "create", "soar", "--role", "Machine.Isolate", "--role", "Alert.ReadWrite.All",
                     "--output", "json", *d)
    assert code == 0, out
    made = json.loads(out)[0]
    assert made["clientSecret"].startswith("vgs_") and made["roles"] == ["Alert.ReadWrite.All", "Machine.Isolate"]
    assert _run("apps", "create", "x", "--role", "Machine.Fly", *d)[0] == 2
    code, out = _run("apps", "revoke", str(made["id"]), "--output", "json", *d)
    assert code == 0 and json.loads(out)[0]["revoked"] is True
    code, out = _run("sources", "create", "dc01", "--output", "json", *d)
    assert code == 0 and json.loads(out)[0]["secret"].startswith("vgi_")
    code, out = _run("sources", "list", "--output", "json", *d)
    assert [s["name"] for s in json.loads(out)] == ["dc01"] and "vgi_" not in out
