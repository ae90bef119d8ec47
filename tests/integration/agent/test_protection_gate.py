"""The protection bundle on the on-access gate, on a tmpfs this test mounts, with real execs: a hash indicator
denies the exec of its file, Allowed overrides Block, an expired indicator stops applying, Audit only records;
a pre-exec ASR rule in Block denies (reported Blocked), Warn denies (Warned), an exclusion exempts, Off does
nothing; and the gate runs only while the bundle needs it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.integration.agent.conftest import ListSink
from vigil.agent.actions.base import ActionSettings
from vigil.agent.protection import Protection
from vigil.asr import AsrMode, AsrPolicy, Exclusion, bundle, find
from vigil.asr.indicators import Indicator, IndicatorAction, IndicatorType

pytestmark = pytest.mark.root
RULE = find("ExecFromTempOrRemovable")


class Clock:
    def __init__(self) -> None:
        self.at = datetime.now(UTC)

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return 0.0


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("fanotify permission events and mounting need root")
    mnt = tmp_path / "mnt"  # under /tmp: ExecFromTempOrRemovable covers it
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _program(path: Path, marker: bytes) -> str:
    shutil.copy("/bin/true", path)
    with path.open("ab") as f:
        f.write(marker)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _runs(path: Path) -> bool:
    try:
        return subprocess.run([str(path)], check=False).returncode == 0
    except PermissionError:
        return False


def _protection(tmpfs: Path, tmp_path: Path, sink: ListSink) -> tuple[Protection, Clock]:
    clock = Clock()
    settings = ActionSettings(tmp_path / "state", "https://127.0.0.1:1")
    settings.state_dir.mkdir()
    return Protection(settings, clock, sink, gate_marks=(str(tmpfs),)), clock


def _apply(p: Protection, *inds: Indicator, policy: AsrPolicy | None = None) -> dict[str, Any]:
    # Network protection's nft is not this test's: no network indicators, so the table it writes is empty.
    return p.apply(bundle.to_json(1, policy or AsrPolicy(), None, inds, "t"))


def test_hash_indicators_deny_the_exec_allowed_wins_expiry_and_audit(tmpfs: Path, tmp_path: Path,
                                                                       sink: ListSink) -> None:
    bad, good = tmpfs / "dropper", tmpfs / "clean"
    digest = _program(bad, b"vigil-h6-bad")
    _program(good, b"vigil-h6-good")
    p, clock = _protection(tmpfs, tmp_path, sink)
    block = Indicator(digest, IndicatorType.FILE_SHA256, IndicatorAction.BLOCK, "dropper", id=1,
                      expiration_time=clock.at + timedelta(hours=1))
    try:
        assert _apply(p, block)["gate"] is True
        assert not _runs(bad) and _runs(good)
        [row] = [r for r in sink.snapshot() if r["ActionType"] == "FileIndicatorBlocked"]
        assert (row["FolderPath"], row["SHA256"], row["AdditionalFields"]["IndicatorId"]) == (str(bad), digest, 1)

        _apply(p, block, Indicator(digest, IndicatorType.FILE_SHA256, IndicatorAction.ALLOWED, "ok", id=2))
        assert _runs(bad)  # Allowed wins
        _apply(p, block)
        clock.at += timedelta(hours=2)
        assert _runs(bad)  # expired
        clock.at -= timedelta(hours=2)
        md5 = hashlib.md5(bad.read_bytes()).hexdigest()  # noqa: S324 - Defender's indicator type
        _apply(p, Indicator(md5, IndicatorType.FILE_MD5, IndicatorAction.AUDIT, "watch", id=3))
        assert _runs(bad)
        assert [r["AdditionalFields"]["IndicatorId"] for r in sink.snapshot()
                if r["ActionType"] == "FileIndicatorAudited"] == [3]
        _apply(p)
        assert p.gate is None  # nothing left to decide before an exec
    finally:
        p.stop()


def test_pre_exec_asr_block_warn_exclusion_and_off(tmpfs: Path, tmp_path: Path, sink: ListSink) -> None:
    prog = tmpfs / "tool"
    _program(prog, b"vigil-h6-asr")
    p, _ = _protection(tmpfs, tmp_path, sink)
    try:
        _apply(p, policy=AsrPolicy({RULE.guid: AsrMode.BLOCK}))
        assert not _runs(prog)
        [row] = [r for r in sink.snapshot() if r["ActionType"] == f"Asr{RULE.name}Blocked"]
        assert row["FolderPath"] == str(prog) and row["AdditionalFields"]["RuleId"] == RULE.guid
        _apply(p, policy=AsrPolicy({RULE.guid: AsrMode.WARN}))
        assert not _runs(prog)
        assert any(r["ActionType"] == f"Asr{RULE.name}Warned" for r in sink.snapshot())
        _apply(p, policy=AsrPolicy({RULE.guid: AsrMode.BLOCK}, rule_exclusions={RULE.guid: (
            Exclusion(f"{tmpfs}/*"),)}))
        assert _runs(prog)
        before = len(sink.snapshot())
        _apply(p, policy=AsrPolicy({RULE.guid: AsrMode.OFF}))
        assert p.gate is None and _runs(prog) and len(sink.snapshot()) == before
    finally:
        p.stop()


def _override(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).parent / "vigil"), "agent", "asr-override", *args,
                           "--state-dir", str(state)], capture_output=True, text=True, check=False)


def test_warn_denies_until_an_override_is_granted_and_block_is_never_overridden(
        tmpfs: Path, tmp_path: Path, sink: ListSink) -> None:
    prog, other = tmpfs / "installer", tmpfs / "other"
    _program(prog, b"vigil-h6-warn")
    _program(other, b"vigil-h6-other")
    p, clock = _protection(tmpfs, tmp_path, sink)
    state = p.settings.state_dir
    try:
        _apply(p, policy=AsrPolicy({RULE.guid: AsrMode.WARN}))
        assert not _runs(prog)
        done = _override(state, RULE.name, "--path", str(prog), "--reason", "vendor installer")
        assert done.returncode == 0, done.stderr
        assert _runs(prog) and not _runs(other)  # only the program the override names
        [row] = [r for r in sink.snapshot() if r["ActionType"] == f"Asr{RULE.name}WarnOverridden"]
        fields = row["AdditionalFields"]
        assert (fields["RuleId"], fields["Path"], fields["Reason"]) == (RULE.guid, str(prog), "vendor installer")
        assert fields["GrantedBy"].startswith("cli:")
        assert _runs(prog)
        assert len([r for r in sink.snapshot() if r["ActionType"].endswith("WarnOverridden")]) == 1  # once

        # The telemetry path lets the covered exec live and records it, naming the override.
        p.observe([{"table": "DeviceProcessEvents", "ActionType": "ProcessCreated", "FileName": prog.name,
                    "FolderPath": str(prog), "ProcessId": 999_999, "InitiatingProcessFileName": "bash"}])
        [seen] = [r for r in sink.snapshot() if r["ActionType"] == f"Asr{RULE.name}Audited"]
        assert fields["OverrideId"] in seen["AdditionalFields"]["Detail"]

        _apply(p, policy=AsrPolicy({RULE.guid: AsrMode.BLOCK}))
        assert not _runs(prog)  # an override is for Warn only
        _apply(p, policy=AsrPolicy({RULE.guid: AsrMode.WARN}))
        assert _runs(prog)
        clock.at += timedelta(hours=25)
        assert not _runs(prog)  # 24 hours by default
        listed = _override(state, "--list", "--output", "json")  # on the real clock, still in force
        assert listed.returncode == 0 and [o["id"] for o in json.loads(listed.stdout)] == [fields["OverrideId"]]
        assert _override(state, "--revoke", fields["OverrideId"]).returncode == 0
        clock.at -= timedelta(hours=25)
        assert not _runs(prog)  # revoked

        bad = _override(state, "NoSuchRule")
        assert bad.returncode == 2 and "no ASR rule 'NoSuchRule'" in bad.stderr
        assert _override(state, RULE.name, "--hours", "0").returncode == 2
    finally:
        p.stop()
