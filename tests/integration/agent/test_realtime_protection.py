"""Real-time protection on a tmpfs this test mounts: real processes exec, open and write files the test builds."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.agent.conftest import ListSink
from tests.unit.av.av_support import eicar
from vigil.agent.antivirus import Mode, RealTimeHook
from vigil.agent.clock import SystemClock
from vigil.agent.config import AgentConfig
from vigil.agent.fanotify import Access, AccessGate, AccessKind, Decision, GateSettings
from vigil.agent.sensors.antivirus import AntivirusSensor
from vigil.agent.sensors.base import HealthState, SensorContext
from vigil.av.definitions import Definitions
from vigil.av.engine import Engine
from vigil.av.hashes import HashStore
from vigil.av.policy import AvPolicy, parse_policy
from vigil.av.quarantine import QuarantineStore

pytestmark = pytest.mark.root
MALWARE = "Trojan:Linux/VigilTestDropper"


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("fanotify permission events and mounting need root")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _program(path: Path, marker: bytes) -> str:
    """A runnable copy of /bin/true made unique by a trailer; returns its SHA-256."""
    shutil.copy("/bin/true", path)
    with path.open("ab") as f:
        f.write(marker)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _definitions(*malware_sha256: str) -> Definitions:
    hashes = HashStore()
    for h in malware_sha256:
        hashes.add(h, MALWARE)
    return Definitions(version=7, hashes=hashes)


def _write_in_child(path: Path, data: bytes) -> None:
    subprocess.run([sys.executable, "-c", f"open({str(path)!r}, 'wb').write(bytes.fromhex({data.hex()!r}))"],
                   check=True)


def _wait(predicate: object, seconds: float = 5.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


class _Gate:
    def __init__(self, gate: AccessGate, hook: RealTimeHook | None = None) -> None:
        self.gate, self.hook = gate, hook

    def __enter__(self) -> AccessGate:
        self.gate.start()
        return self.gate

    def __exit__(self, *_: object) -> None:
        self.gate.stop()
        if self.hook is not None:
            self.hook.close()


def _av(tmpfs: Path, tmp_path: Path, sink: ListSink, mode: Mode, definitions: Definitions,
        open_perm: bool = False, budget: float = 2.0, policy: AvPolicy | None = None) -> _Gate:
    hook = RealTimeHook(Engine(definitions), mode, sink, SystemClock(), QuarantineStore(tmp_path / "quarantine"),
                        policy=policy)
    gate = AccessGate(GateSettings(marks=(str(tmpfs),), open_perm=open_perm, budget_seconds=budget), [hook])
    return _Gate(gate, hook)


def _detections(sink: ListSink) -> list[dict[str, object]]:
    return [r for r in sink.snapshot() if r["ActionType"] == "AntivirusDetection"]


def test_block_mode_denies_the_exec_of_a_known_malicious_program_and_quarantines_it(
        tmpfs: Path, tmp_path: Path, sink: ListSink) -> None:
    bad, good = tmpfs / "dropper", tmpfs / "clean"
    digest = _program(bad, b"vigil-test-malware")
    _program(good, b"vigil-test-clean")
    with _av(tmpfs, tmp_path, sink, Mode.BLOCK, _definitions(digest)) as gate:
        assert subprocess.run([str(good)], check=False).returncode == 0
        with pytest.raises(PermissionError):
            subprocess.run([str(bad)], check=False)
        assert _wait(lambda: not bad.exists()), "the blocked program is quarantined after the answer"
        assert subprocess.run([str(good)], check=False).returncode == 0  # the second run comes from the cache
        assert gate.counters.denied == 1 and gate.counters.failed_open == 0
    [row] = _detections(sink)
    fields = row["AdditionalFields"]
    assert isinstance(fields, dict)
    assert (row["FolderPath"], row["SHA256"]) == (str(bad), digest)
    assert (fields["ThreatName"], fields["ActionTaken"], fields["Mode"], fields["Access"]) == (
        MALWARE, "Blocked", "block", "exec")
    assert fields["DetectionSource"] == "Real-time protection"
    [entry] = QuarantineStore(tmp_path / "quarantine").list()
    assert (entry.path, entry.sha256) == (str(bad), digest)


def test_the_policys_threat_actions_remove_audit_and_allow(tmpfs: Path, tmp_path: Path, sink: ListSink) -> None:
    bad = tmpfs / "dropper"
    digest = _program(bad, b"vigil-test-malware")
    policy = parse_policy({"threat_actions": {"malware": "remove", "test": "audit"}}, "policy")
    with _av(tmpfs, tmp_path, sink, Mode.BLOCK, _definitions(digest), policy=policy) as gate:
        with pytest.raises(PermissionError):
            subprocess.run([str(bad)], check=False)
        _write_in_child(tmpfs / "eicar.com", eicar())
        assert _wait(lambda: not bad.exists() and len(_detections(sink)) == 2)
        assert gate.counters.denied == 1
    assert (tmpfs / "eicar.com").read_bytes() == eicar()  # a test file under "audit": reported, left alone
    assert not QuarantineStore(tmp_path / "quarantine").list()  # removed, not kept
    taken = {r["FolderPath"]: (r["AdditionalFields"]["ActionTaken"],  # type: ignore[index]
                               r["AdditionalFields"]["PolicyAction"]) for r in _detections(sink)}  # type: ignore[index]
    assert taken == {str(bad): ("Blocked", "remove"), str(tmpfs / "eicar.com"): ("None", "audit")}

    # An allowed threat runs and is not reported.
    digest = _program(bad, b"vigil-test-malware-2")
    allowed = parse_policy({"allowed_threats": [MALWARE]}, "policy")
    with _av(tmpfs, tmp_path, sink, Mode.BLOCK, _definitions(digest), policy=allowed) as gate:
        assert subprocess.run([str(bad)], check=False).returncode == 0
        assert gate.counters.denied == 0
    assert bad.exists() and len(_detections(sink)) == 2


def test_passive_mode_reports_but_never_blocks_or_removes(tmpfs: Path, tmp_path: Path, sink: ListSink) -> None:
    bad = tmpfs / "dropper"
    digest = _program(bad, b"vigil-test-malware")
    with _av(tmpfs, tmp_path, sink, Mode.PASSIVE, _definitions(digest), open_perm=True) as gate:
        assert subprocess.run([str(bad)], check=False).returncode == 0
        _write_in_child(tmpfs / "eicar.com", eicar())
        assert _wait(lambda: len(_detections(sink)) == 2)
        assert gate.counters.denied == 0
    assert bad.exists() and (tmpfs / "eicar.com").read_bytes() == eicar()
    assert not QuarantineStore(tmp_path / "quarantine").list()
    rows = _detections(sink)
    assert {r["FolderPath"] for r in rows} == {str(bad), str(tmpfs / "eicar.com")}
    assert all(r["AdditionalFields"]["ActionTaken"] == "None" and  # type: ignore[index]
               r["AdditionalFields"]["Mode"] == "passive" for r in rows)  # type: ignore[index]


def test_a_file_written_with_a_threat_is_quarantined_and_its_open_denied_in_block_mode(
        tmpfs: Path, tmp_path: Path, sink: ListSink) -> None:
    clean = tmpfs / "notes.txt"
    clean.write_text("nothing to see\n")
    with _av(tmpfs, tmp_path, sink, Mode.BLOCK, _definitions(), open_perm=True):
        # The EICAR file is placed by this process (never blocked, not scanned), then read by another one.
        placed = tmpfs / "placed.com"
        placed.write_bytes(eicar())
        done = subprocess.run(["cat", str(placed)], capture_output=True, check=False)
        assert done.returncode != 0 and b"not permitted" in done.stderr  # fanotify denies with EPERM
        assert subprocess.run(["cat", str(clean)], capture_output=True, check=False).stdout == b"nothing to see\n"
        _write_in_child(tmpfs / "written.com", eicar())
        assert _wait(lambda: not (tmpfs / "written.com").exists() and not placed.exists())
    entries = {e.path: e for e in QuarantineStore(tmp_path / "quarantine").list()}
    assert set(entries) == {str(placed), str(tmpfs / "written.com")}
    taken = {(r["FolderPath"], r["AdditionalFields"]["ActionTaken"]) for r in _detections(sink)}  # type: ignore[index]
    assert taken == {(str(placed), "Blocked"), (str(tmpfs / "written.com"), "Quarantined")}


class _Hanging:
    name, kinds = "hangs", frozenset({AccessKind.EXEC, AccessKind.OPEN})

    def __init__(self) -> None:
        self.release = threading.Event()

    def decide(self, access: Access) -> Decision:
        self.release.wait(10)
        return Decision.DENY


class _Crashing:
    name, kinds = "crashes", frozenset({AccessKind.EXEC})

    def decide(self, access: Access) -> Decision:
        raise RuntimeError("a bug in a hook")


class _DenyAll:
    name, kinds = "denies", frozenset({AccessKind.EXEC, AccessKind.OPEN})

    def decide(self, access: Access) -> Decision:
        return Decision.DENY


def test_a_hanging_hook_fails_open_within_the_budget_and_is_counted(tmpfs: Path) -> None:
    prog = tmpfs / "prog"
    _program(prog, b"x")
    hook = _Hanging()
    gate = AccessGate(GateSettings(marks=(str(tmpfs),), budget_seconds=0.2, workers=1), [hook])
    try:
        with _Gate(gate):
            for _ in range(3):  # more than the one worker: the watchdog answers and replaces it
                start = time.monotonic()
                assert subprocess.run([str(prog)], check=False).returncode == 0
                assert time.monotonic() - start < 1.5
            assert gate.counters.failed_open == 3 and gate.counters.denied == 0
    finally:
        hook.release.set()


def test_a_crashing_hook_allows_and_is_counted(tmpfs: Path) -> None:
    prog = tmpfs / "prog"
    _program(prog, b"x")
    gate = AccessGate(GateSettings(marks=(str(tmpfs),)), [_Crashing()])
    with _Gate(gate):
        assert subprocess.run([str(prog)], check=False).returncode == 0
        assert gate.counters.hook_errors == 1 and gate.counters.failed_open == 0


def test_the_gate_never_blocks_its_own_process_nor_its_never_block_paths(tmpfs: Path) -> None:
    (tmpfs / "spool").mkdir()
    data, prog, own = tmpfs / "data", tmpfs / "prog", tmpfs / "spool" / "prog"
    data.write_text("x")
    _program(prog, b"x")
    _program(own, b"y")
    gate = AccessGate(GateSettings(marks=(str(tmpfs),), open_perm=True, never_block=(f"{tmpfs}/spool/",)),
                      [_DenyAll()])
    with _Gate(gate):
        assert data.read_text() == "x"  # this process opens it: never blocked
        with pytest.raises(PermissionError):
            subprocess.run([str(prog)], check=False)
        assert subprocess.run([str(own)], check=False).returncode == 0


def test_the_open_of_a_cached_clean_file_is_not_delayed_past_the_budget(
        tmpfs: Path, tmp_path: Path, sink: ListSink) -> None:
    clean = tmpfs / "clean.txt"
    clean.write_bytes(b"clean " * 1000)
    probe = ("import os, sys, time\nworst = 0.0\nfor _ in range(50):\n    t = time.perf_counter()\n"
             "    os.close(os.open(sys.argv[1], os.O_RDONLY))\n    worst = max(worst, time.perf_counter() - t)\n"
             "print(worst)")
    with _av(tmpfs, tmp_path, sink, Mode.BLOCK, _definitions(), open_perm=True, budget=0.25) as gate:
        out = subprocess.run([sys.executable, "-c", probe, str(clean)], capture_output=True, text=True, check=True)
        assert float(out.stdout) < 0.25
        assert gate.counters.failed_open == 0 and gate.counters.allowed >= 50


def test_the_sensor_protects_the_configured_mount_and_reports_its_state(tmpfs: Path, tmp_path: Path,
                                                                        sink: ListSink) -> None:
    config = AgentConfig(state_dir=tmp_path / "state", av_realtime=True, av_mode="block", av_marks=(str(tmpfs),))
    sensor = AntivirusSensor(SensorContext(sink=sink, clock=SystemClock(), config=config))
    assert sensor.start().state is HealthState.ACTIVE
    try:
        _write_in_child(tmpfs / "eicar.com", eicar())
        assert _wait(lambda: not (tmpfs / "eicar.com").exists())
        state = sensor.protection_state()
        assert state["realTimeProtection"] is True and state["mode"] == "block"
        assert state["protection"]["quarantined"] == 1  # type: ignore[index]
    finally:
        sensor.stop()
    off = AntivirusSensor(SensorContext(sink=sink, clock=SystemClock(),
                                        config=AgentConfig(state_dir=tmp_path / "s2", av_realtime=False)))
    assert off.start().state is HealthState.UNAVAILABLE
    assert off.protection_state()["realTimeProtection"] is False


def test_exclusions_reach_real_time_protection_while_it_runs(tmpfs: Path, tmp_path: Path, sink: ListSink) -> None:
    from vigil.agent.antivirus import ExclusionWatch, exclusion_file
    from vigil.av.exclusions import ExclusionFile

    (tmpfs / "build").mkdir()
    bad = tmpfs / "build" / "dropper"
    digest = _program(bad, b"vigil-test-malware")
    state = tmp_path / "state"
    hook = RealTimeHook(Engine(_definitions(digest)), Mode.BLOCK, sink, SystemClock(), None,
                        exclusions=ExclusionWatch(state, every=0.0))
    gate = AccessGate(GateSettings(marks=(str(tmpfs),), budget_seconds=2.0), [hook])
    with _Gate(gate, hook):
        with pytest.raises(PermissionError):
            subprocess.run([str(bad)], check=False)
        excl = ExclusionFile.load(exclusion_file(state))
        excl.add("folder", str(tmpfs / "build"))
        excl.save()
        assert subprocess.run([str(bad)], check=False).returncode == 0
        excl.remove("folder", str(tmpfs / "build"))
        excl.add("process", "python3")  # a program's own opens are left alone, others' are not
        excl.save()
        with pytest.raises(PermissionError):
            subprocess.run([str(bad)], check=False)
