"""State-changing CLI verbs leave an audit record naming the OS user and host, as the portal's do."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import VigilServer, enroll_raw
from vigil.config import load_settings
from vigil.store import audit, db


def _vigil(server: VigilServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VIGIL_DATA_DIR": str(server.data_dir)}
    env.pop("VIGIL_DATABASE_URL", None)
    return subprocess.run([sys.executable, "-m", "vigil", *args, "--data-dir", str(server.data_dir)],
                          capture_output=True, text=True, env=env, timeout=120, check=False)


def test_onboarding_package_and_offboard_from_the_cli_are_audited(sqlite_server: VigilServer, tmp_path: Path) -> None:
    pkg_path = tmp_path / "pkg.json"
    made = _vigil(sqlite_server, "onboarding-package", "-o", str(pkg_path))
    assert made.returncode == 0, made.stderr
    device = enroll_raw(sqlite_server, json.loads(pkg_path.read_text())["token"], "cli-audited").json()["device_id"]
    gone = _vigil(sqlite_server, "offboard", device)
    assert gone.returncode == 0, gone.stderr

    engine = db.make_engine(load_settings(sqlite_server.data_dir).db_url)
    try:
        with engine.connect() as conn:
            made_rows = audit.entries(conn, action="onboarding.package")
            gone_rows = audit.entries(conn, action="device.offboard")
            chain = audit.verify(conn)
    finally:
        engine.dispose()
    host = socket.gethostname()
    assert [e.actor.endswith(f"@{host}") and e.actor.startswith("cli:") for e, _ in made_rows] == [True]
    assert [(e.target_id, e.actor.endswith(f"@{host}")) for e, _ in gone_rows] == [(device, True)]
    assert chain.ok


def test_rule_content_changes_from_the_cli_are_audited_and_a_refused_one_records_nothing(
        sqlite_server: VigilServer, tmp_path: Path) -> None:
    from tests.unit.content.test_store import NC, _release

    release = _release(tmp_path / "release")
    steps = [
        (("rules", "import", "--from", str(release)), 0),
        (("rules", "disable", "sigmahq/rules/linux", "--group", "web"), 0),
        (("rules", "set-level", NC, "critical"), 0),
        (("rules", "enable", "nope"), 2),  # refused: nothing changed, nothing recorded
        (("rules", "set-level", NC, "severe"), 2),
        (("rules", "update", "--from", str(release)), 0),
    ]
    for args, code in steps:
        done = _vigil(sqlite_server, *args)
        assert done.returncode == code, (args, done.stdout, done.stderr)

    engine = db.make_engine(load_settings(sqlite_server.data_dir).db_url)
    try:
        with engine.connect() as conn:
            rows = [e for e, _ in audit.entries(conn) if e.action.startswith("content.")]
            chain = audit.verify(conn)
    finally:
        engine.dispose()
    me = f"@{socket.gethostname()}"
    assert all(e.actor.startswith("cli:") and e.actor.endswith(me) for e in rows), [e.actor for e in rows]
    assert sorted((e.action, e.target_id) for e in rows) == sorted([
        ("content.import", "sigmahq"), ("content.switch", "sigmahq/rules/linux"), ("content.set_level", NC),
        ("content.update", "sigmahq"),
    ])
    switched = next(e for e in rows if e.action == "content.switch")
    assert switched.after == {"enabled": False, "group": "web"}
    assert next(e for e in rows if e.action == "content.set_level").after == {"level": "critical", "group": None}
    assert chain.ok


def test_setup_records_what_it_made_and_by_whom_and_a_rerun_records_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh"
    env = {k: v for k, v in os.environ.items() if k not in ("VIGIL_DATABASE_URL", "VIGIL_DATA_DIR")}
    for _ in range(2):
        done = subprocess.run([sys.executable, "-m", "vigil", "setup", "--data-dir", str(data_dir)],
                              capture_output=True, text=True, env=env, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
    engine = db.make_engine(load_settings(data_dir).db_url)
    try:
        with engine.connect() as conn:
            rows = [e for e, _ in audit.entries(conn, action="server.setup")]
    finally:
        engine.dispose()
    assert len(rows) == 1 and rows[0].actor.startswith("cli:") and rows[0].actor.endswith(f"@{socket.gethostname()}")
    assert rows[0].target_id == str(data_dir)
    assert "administrator 'admin'" in rows[0].after["created"]
    assert not any("password" in item for item in rows[0].after["created"])


def test_the_first_start_import_of_vigil_up_is_audited_like_rules_import(
        sqlite_server: VigilServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from io import StringIO

    from rich.console import Console

    from tests.unit.content.test_store import _release
    from vigil.commands.rules import import_at_first_start

    monkeypatch.delenv("VIGIL_DATABASE_URL", raising=False)
    release = _release(tmp_path / "release")
    for _ in range(2):  # the second start keeps the pack: nothing imported, nothing recorded
        import_at_first_start(sqlite_server.data_dir, release, Console(file=StringIO()))
    engine = db.make_engine(load_settings(sqlite_server.data_dir).db_url)
    try:
        with engine.connect() as conn:
            rows = [e for e, _ in audit.entries(conn, action="content.import")]
            chain = audit.verify(conn)
    finally:
        engine.dispose()
    assert [(e.target_id, e.after["via"], e.after["from"]) for e in rows] == [
        ("sigmahq", "vigil up --rules-from", str(release))]
    assert rows[0].actor.startswith("cli:") and rows[0].actor.endswith(f"@{socket.gethostname()}")
    assert chain.ok


def test_a_feed_bundle_imported_into_a_server_is_audited_once(sqlite_server: VigilServer, tmp_path: Path) -> None:
    from tests.integration.tvm.test_feed_bundle import build, vigil
    from tests.unit.tvm.corpus_support import write_corpus

    write_corpus(tmp_path / "vulns")
    bundle, pub = build(tmp_path, "feeds-1.zip", 100)
    data = str(sqlite_server.data_dir)
    for _ in range(2):  # the second import finds it there already: nothing changed, nothing recorded
        r = vigil("tvm", "feed", "import", str(bundle), "--public-key", pub, "--data-dir", data, home=tmp_path)
        assert r.returncode == 0, r.stderr
    engine = db.make_engine(load_settings(sqlite_server.data_dir).db_url)
    try:
        with engine.connect() as conn:
            rows = [e for e, _ in audit.entries(conn, action="tvm.feed_import")]
    finally:
        engine.dispose()
    assert [(e.target_id, e.after["advisories"], e.after["pinnedKey"]) for e in rows] == [("100", 9, True)]
    assert rows[0].actor.startswith("cli:") and rows[0].actor.endswith(f"@{socket.gethostname()}")
