"""Restrict app execution with fanotify, only on a tmpfs this test mounts."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from vigil.agent.actions import restrict
from vigil.agent.actions.base import ActionContext, ActionSettings
from vigil.agent.clock import SystemClock
from vigil.wire import ActionCommand

pytestmark = pytest.mark.root


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("fanotify permission events and mounting need root")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _cmd(kind: str, **params: object) -> ActionCommand:
    now = datetime.now(UTC)
    return ActionCommand(action_id="a" * 16, device_id="d", type=kind, parameters=params, issued_at=now,
                         expires_at=now, nonce="n" * 16)


def test_only_allow_listed_programs_run_until_the_restriction_is_removed(tmp_path: Path, tmpfs: Path) -> None:
    (tmpfs / "allowed").mkdir()
    ok, blocked = tmpfs / "allowed" / "true", tmpfs / "true"
    shutil.copy("/bin/true", ok)
    shutil.copy("/bin/true", blocked)
    ctx = ActionContext(ActionSettings(tmp_path, "https://127.0.0.1:1"), SystemClock())
    restrict.HANDLERS["RestrictCodeExecution"](ctx, _cmd("RestrictCodeExecution", Paths=[str(tmpfs)],
                                                         AllowPrefixes=[str(tmpfs / "allowed") + "/"]))
    try:
        assert subprocess.run([str(ok)], check=False).returncode == 0
        with pytest.raises(PermissionError):
            subprocess.run([str(blocked)], check=False)
        assert subprocess.run(["/bin/true"], check=False).returncode == 0  # other mounts are not marked
        # Survives an agent restart: the saved state re-creates the listener.
        restrict.stop_listener(ctx)
        assert subprocess.run([str(blocked)], check=False).returncode == 0
        assert restrict.restore(ctx) is not None
        with pytest.raises(PermissionError):
            subprocess.run([str(blocked)], check=False)
    finally:
        out = restrict.HANDLERS["UnrestrictCodeExecution"](ctx, _cmd("UnrestrictCodeExecution"))
    assert "removed" in out.message
    assert subprocess.run([str(blocked)], check=False).returncode == 0
    assert restrict.restore(ctx) is None
