"""`vigil tvm configuration` as a real process on a fixture root folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.unit.tvm.test_configuration import hardened
from vigil.tvm.configuration import CHECKS


def test_the_cli_assesses_a_root_folder(tmp_path: Path) -> None:
    root = hardened(tmp_path / "host")
    r = subprocess.run([sys.executable, "-m", "vigil", "tvm", "configuration", "--root", str(root), "-o", "json"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["secureScore"] == 100.0 and len(doc["assessments"]) == len(CHECKS)
    assert {"ConfigurationId", "IsCompliant", "IsApplicable", "Evidence", "RemediationOptions"} <= set(
        doc["assessments"][0])
    bad = subprocess.run([sys.executable, "-m", "vigil", "tvm", "configuration", "--root", str(tmp_path / "no")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--root" in bad.stderr and "Traceback" not in bad.stderr
