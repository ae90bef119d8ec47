"""RunAntiVirusScan runs a real scan: it finds what is planted, reports it in the result and as DeviceEvents rows."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.unit.av.av_support import eicar, zip_of
from vigil.agent.actions.base import ActionContext, ActionFailed, ActionSettings
from vigil.agent.actions.scan import HANDLERS
from vigil.agent.clock import SystemClock
from vigil.wire import ActionCommand

NOW = datetime.now(UTC)


def _cmd(**parameters: Any) -> ActionCommand:
    return ActionCommand(action_id=secrets.token_hex(8), device_id="dev-1", type="RunAntiVirusScan",
                         parameters=parameters, issued_at=NOW, expires_at=NOW + timedelta(hours=1),
                         nonce=secrets.token_hex(16))


def _ctx(tmp_path: Path, events: list[tuple[str, dict[str, Any]]]) -> ActionContext:
    (tmp_path / "state").mkdir(exist_ok=True)
    settings = ActionSettings(tmp_path / "state", "https://127.0.0.1:1", persistence_root=tmp_path / "root")
    return ActionContext(settings, SystemClock(), event=lambda a, f: events.append((a, f)))


def test_quick_scan_finds_planted_files_in_quick_locations_only(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "tmp" / "drop").mkdir(parents=True)
    (root / "tmp" / "drop" / "eicar.com").write_bytes(eicar())
    (root / "etc" / "cron.d").mkdir(parents=True)
    (root / "etc" / "cron.d" / "job.zip").write_bytes(zip_of({"e.txt": eicar()}))
    (root / "opt").mkdir()
    (root / "opt" / "elsewhere.com").write_bytes(eicar())  # not a quick location
    events: list[tuple[str, dict[str, Any]]] = []
    outcome = HANDLERS["RunAntiVirusScan"](_ctx(tmp_path, events), _cmd(ScanType="Quick"))
    found = sorted(d["location"] for d in outcome.output["detections"])
    assert found == [f"{root}/etc/cron.d/job.zip->e.txt", f"{root}/tmp/drop/eicar.com"]
    assert "2 threat(s): Virus:DOS/EICAR_Test_File" in outcome.message
    detections = [f for a, f in events if a == "AntivirusDetection"]
    assert sorted(f["FolderPath"] for f in detections) == [f"{root}/etc/cron.d/job.zip", f"{root}/tmp/drop/eicar.com"]
    assert all(f["DetectionSource"] == "Antivirus" and f["ThreatName"] == "Virus:DOS/EICAR_Test_File"
               for f in detections)
    [(_, done)] = [(a, f) for a, f in events if a == "AntivirusScanCompleted"]
    assert done["Threats"] == 2 and done["Files"] == 2


def test_full_scan_covers_everything_and_a_bad_scan_type_is_refused(tmp_path: Path) -> None:
    (tmp_path / "root" / "opt").mkdir(parents=True)
    (tmp_path / "root" / "opt" / "elsewhere.com").write_bytes(eicar())
    events: list[tuple[str, dict[str, Any]]] = []
    outcome = HANDLERS["RunAntiVirusScan"](_ctx(tmp_path, events), _cmd(ScanType="Full"))
    assert [d["path"] for d in outcome.output["detections"]] == [str(tmp_path / "root" / "opt" / "elsewhere.com")]
    with pytest.raises(ActionFailed, match="ScanType 'Deep' is not Quick or Full"):
        HANDLERS["RunAntiVirusScan"](_ctx(tmp_path, events), _cmd(ScanType="Deep"))
