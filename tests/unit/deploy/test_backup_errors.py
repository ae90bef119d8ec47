"""The store's backup errors reach the CLI as the deploy layer's BackupError, with the store's message."""

from __future__ import annotations

from pathlib import Path

import pytest

from vigil.config import Settings
from vigil.core.clock import SystemClock
from vigil.deploy.backup import create_backup
from vigil.deploy.backup_archive import BackupError


def test_a_database_the_store_cannot_copy_is_a_backup_error_naming_it(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url="mysql://db.example/vigil")
    with pytest.raises(BackupError, match="cannot back up a mysql database"):
        create_backup(settings, tmp_path / "out.vbk", b"pass", clock=SystemClock(), progress=lambda *a: None,
                      actor="t")
