"""The agent sees the incumbent antivirus/EDR: real processes named like ClamAV's daemon, and fanotify users."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vigil.agent.incumbent import NONE_DETECTED, IncumbentProbe, describe, detect
from vigil.core.sensor_health import incumbent, sensor_problems


@pytest.fixture()
def clamd(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real process whose name is clamd (a copy of sleep), as ClamAV's daemon shows in /proc."""
    exe = tmp_path / "clamd"
    sleep = shutil.which("sleep")
    assert sleep is not None
    shutil.copy(sleep, exe)
    p = subprocess.Popen([str(exe), "60"])
    try:
        for _ in range(100):
            if Path(f"/proc/{p.pid}/comm").read_text().strip() == "clamd":
                break
            time.sleep(0.01)
        yield p
    finally:
        p.kill()
        p.wait()


def test_clamd_is_detected_and_reported_without_making_the_sensor_unhealthy(clamd: subprocess.Popen[bytes]) -> None:
    found = [f for f in detect() if f.pid == clamd.pid]
    assert [(f.product, f.process, f.how) for f in found] == [("ClamAV", "clamd", "process")]
    line = describe(detect())
    assert line.startswith("detected: ") and "ClamAV" in line and f"clamd pid {clamd.pid}" in line
    health = {"process": "active", "resource_budget": "within budget: …", "incumbent_security": line}
    assert sensor_problems(health, {"produced": 10, "dropped": {}}) == []
    assert incumbent(health) == line
    clamd.kill()
    clamd.wait()
    assert not [f for f in detect() if f.pid == clamd.pid]


def test_the_probe_rescans_only_after_its_interval(clamd: subprocess.Popen[bytes]) -> None:
    t = [0.0]
    probe = IncumbentProbe(monotonic=lambda: t[0])
    assert "ClamAV" in probe.describe()
    clamd.kill()
    clamd.wait()
    t[0] = 10.0
    assert "ClamAV" in probe.describe()  # cached
    t[0] = 700.0
    assert "clamd pid" not in probe.describe()


_FANOTIFY_HOLDER = """
import ctypes, sys, time
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.fanotify_init(0, 0)
if fd < 0:
    print("no", flush=True); sys.exit(0)
libc.prctl(15, b"acme-scand", 0, 0, 0)
print("yes", flush=True)
time.sleep(60)
"""


def test_an_unknown_fanotify_user_is_reported() -> None:
    p = subprocess.Popen([sys.executable, "-c", _FANOTIFY_HOLDER], stdout=subprocess.PIPE)
    try:
        assert p.stdout is not None
        if p.stdout.readline().strip() != b"yes":
            pytest.skip("fanotify_init needs CAP_SYS_ADMIN here")
        found = [f for f in detect() if f.pid == p.pid]
        assert [(f.product, f.process, f.how) for f in found] == [("unknown", "acme-scand", "fanotify")]
    finally:
        p.kill()
        p.wait()


def test_nothing_found_is_said_plainly(tmp_path: Path) -> None:
    assert detect(tmp_path) == [] and describe([]) == NONE_DETECTED
