"""`vigil users add|list|disable|enable|reset-password` on a real server's data directory: the accounts sign in
(or stop signing in) over the API at once, bad input is named, and each change is audited as the OS user."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.integration.server.rbac_support import admin
from tests.support import VigilServer

PASSWORD = "a long enough passphrase 77"
OTHER = "quite another passphrase 88"


def _vigil(server: VigilServer, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIGIL_DATA_DIR", "VIGIL_DATABASE_URL")}
    return subprocess.run([sys.executable, "-m", "vigil", "users", *args, "--data-dir", str(server.data_dir)],
                          capture_output=True, text=True, env=env, input=stdin, timeout=120, check=False)


def _signs_in(server: VigilServer, username: str, password: str) -> bool:
    with server.client() as c:
        return c.post("/api/auth/login", json={"username": username, "password": password}).status_code == 200


def test_user_verbs(sqlite_server: VigilServer) -> None:
    server = sqlite_server
    made = _vigil(server, "add", "carol", "--role", "full-access", "--email", "carol@corp.example",
                  "--password-stdin", "--output", "json", stdin=PASSWORD + "\n")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout) == [{"username": "carol", "role": "full-access", "email": "carol@corp.example",
                                        "source": "local", "disabled": False, "userGroups": []}]
    assert _signs_in(server, "carol", PASSWORD)

    again = _vigil(server, "add", "carol", "--password-stdin", stdin=PASSWORD + "\n")
    assert again.returncode == 2 and "already exists" in again.stderr
    weak = _vigil(server, "add", "dave", "--password-stdin", stdin="password\n")
    assert weak.returncode == 2 and "password" in weak.stderr and "field: password" in weak.stderr
    bad_role = _vigil(server, "add", "dave", "--role", "root", "--password-stdin", stdin=PASSWORD + "\n")
    assert bad_role.returncode == 2 and "role: use one of" in bad_role.stderr
    bad_name = _vigil(server, "add", "da ve", "--password-stdin", stdin=PASSWORD + "\n")
    assert bad_name.returncode == 2 and "username" in bad_name.stderr
    empty = _vigil(server, "add", "dave", "--password-stdin", stdin="")
    assert empty.returncode == 2 and "stdin held no password" in empty.stderr

    listed = _vigil(server, "list", "--output", "json")
    assert listed.returncode == 0, listed.stderr
    assert [u["username"] for u in json.loads(listed.stdout)] == ["admin", "carol"]
    table = _vigil(server, "list")
    assert "carol" in table.stdout and "full-access" in table.stdout and "2 user(s)." in table.stderr

    reset = _vigil(server, "reset-password", "carol", "--password-stdin", stdin=OTHER + "\n")
    assert reset.returncode == 0, reset.stderr
    assert not _signs_in(server, "carol", PASSWORD) and _signs_in(server, "carol", OTHER)
    assert _vigil(server, "reset-password", "nobody", "--password-stdin", stdin=OTHER + "\n").returncode == 3

    off = _vigil(server, "disable", "carol", "--output", "json")
    assert off.returncode == 0 and json.loads(off.stdout)[0]["disabled"] is True
    assert not _signs_in(server, "carol", OTHER)
    assert _vigil(server, "disable", "nobody").returncode == 3
    on = _vigil(server, "enable", "carol")
    assert on.returncode == 0, on.stderr
    assert _signs_in(server, "carol", OTHER)

    with admin(server) as c:
        entries = [e for e in c.get("/api/audit").json()["value"]
                   if e["target_id"] == "carol" and not e["action"].startswith("user.sign_in")]
    assert sorted(e["action"] for e in entries) == ["user.create", "user.password_reset", "user.update",
                                                    "user.update"]
    assert all(e["actor"].startswith("cli:") for e in entries)


def test_run_from_a_checkout_after_make_up_the_cli_finds_var_by_itself(sqlite_server: VigilServer,
                                                                        tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "var").symlink_to(sqlite_server.data_dir)  # where `make up` keeps its data
    env = {k: v for k, v in os.environ.items() if k not in ("VIGIL_DATA_DIR", "VIGIL_DATABASE_URL")}
    listed = subprocess.run([sys.executable, "-m", "vigil", "users", "list", "--output", "json"], cwd=checkout,
                            capture_output=True, text=True, env=env, timeout=120, check=False)
    assert listed.returncode == 0, listed.stderr
    assert "admin" in [u["username"] for u in json.loads(listed.stdout)]
