"""StopAndQuarantineFile removes the cron, systemd and shell-profile entries that start a file; undo restores them."""

from __future__ import annotations

import json
import secrets
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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
    def __init__(self) -> None:
        self.results: list[tuple[str, ActionResult]] = []

    def poll_commands(self, wait: float) -> CommandPoll:
        return CommandPoll(commands=[])

    def report_result(self, action_id: str, result: ActionResult) -> None:
        self.results.append((action_id, result))

    def upload_artifact(self, action_id: str, file: Path) -> None:
        raise AssertionError("quarantine uploads nothing")


def _signed(kind: str, **parameters: Any) -> SignedCommand:
    return sign_command(KEY, ActionCommand(
        action_id=secrets.token_hex(8), device_id="dev-1", type=kind, parameters=parameters, issued_at=NOW,
        expires_at=NOW + timedelta(hours=1), nonce=secrets.token_hex(16)))


def test_quarantine_removes_cron_unit_and_profile_entries_and_undo_restores_them(tmp_path: Path) -> None:
    root = tmp_path / "root"
    payload = root / "opt" / "evil" / "payload.sh"
    payload.parent.mkdir(parents=True)
    payload.write_text("#!/bin/sh\necho owned\n")
    payload.chmod(0o755)
    cron = root / "etc" / "cron.d" / "evil"
    cron.parent.mkdir(parents=True)
    cron_line = f"*/5 * * * * root {payload}"
    cron.write_text(f"SHELL=/bin/sh\n{cron_line}\n")
    unit = root / "etc" / "systemd" / "system" / "evil.service"
    unit.parent.mkdir(parents=True)
    unit_text = f"[Service]\nExecStart={payload}\n\n[Install]\nWantedBy=multi-user.target\n"
    unit.write_text(unit_text)
    innocent_unit = unit.parent / "sshd.service"
    innocent_unit.write_text("[Service]\nExecStart=/usr/sbin/sshd -D\n")
    profile = root / "root" / ".bashrc"
    profile.parent.mkdir(parents=True)
    profile_line = f"{payload} >/dev/null 2>&1 &"
    profile.write_text(f"alias ll='ls -l'\n{profile_line}\nexport PATH=$PATH:/opt/bin\n")

    # The test root comes from the environment `vigil agent run` reads and passes in, as for a running agent.
    (tmp_path / "state").mkdir()
    settings = ActionSettings.from_env(tmp_path / "state", "https://127.0.0.1:1", {PERSISTENCE_ROOT_ENV: str(root)})
    assert settings.persistence_root == root
    identity = Identity("dev-1", "vgd_x", "https://127.0.0.1:1", "", "", "now", action_public_key=public_key_text(KEY))
    transport = _Transport()
    worker = ActionWorker(identity, transport, _Clock(), settings, lambda _a, _f: None)  # type: ignore[arg-type]
    try:
        quarantine = _signed("StopAndQuarantineFile", Path=str(payload))
        result = worker.handle(quarantine)
        assert result.status == "Succeeded", result.message
        assert "removed 3 persistence entries" in result.message

        assert not payload.exists()
        assert cron.read_text() == "SHELL=/bin/sh\n"
        assert not unit.exists()
        assert innocent_unit.exists()
        assert profile.read_text() == "alias ll='ls -l'\nexport PATH=$PATH:/opt/bin\n"
        removed = result.output["persistence"]
        assert {"path": str(cron), "lines": [cron_line]} in removed
        assert {"path": str(profile), "lines": [profile_line]} in removed
        assert [r["path"] for r in removed if "file" in r] == [str(unit)]
        vault = settings.quarantine_dir
        meta = json.loads((vault / f"{quarantine.command.action_id}.json").read_text())
        assert meta["persistence"] == removed

        # Undo is RestoreQuarantinedFile; docs/response-actions.md promises the persistence entries come back.
        restore = worker.handle(_signed("RestoreQuarantinedFile", QuarantineId=quarantine.command.action_id))
        assert restore.status == "Succeeded", restore.message
        assert payload.read_text() == "#!/bin/sh\necho owned\n"
        assert payload.stat().st_mode & 0o777 == 0o755
        assert cron_line in cron.read_text().splitlines()
        assert unit.read_text() == unit_text
        assert profile_line in profile.read_text().splitlines()
        assert not (vault / f"{quarantine.command.action_id}.json").exists()
        assert [p.name for p in vault.iterdir()] == []
    finally:
        worker.stop()
