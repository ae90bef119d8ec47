"""The CO-RE objects are committed: they match their sources, and the agent loads them with no compiler on PATH."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]


def test_the_shipped_objects_are_built_from_the_current_sources() -> None:
    done = subprocess.run(["bash", "scripts/build-bpf.sh", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/sys/kernel/btf/vmlinux").exists(), reason="needs root and BTF")
def test_the_process_sensor_loads_the_shipped_object_without_clang_or_bpftool() -> None:
    code = (
        "import shutil; assert shutil.which('clang') is None and shutil.which('bpftool') is None\n"
        "from vigil.agent.sensors.process_ebpf import BpfProcessSource\n"
        "s = BpfProcessSource(); print(sorted(s.programs)); s.close()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env={"PATH": "/nonexistent"}, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "vigil_exec" in done.stdout
