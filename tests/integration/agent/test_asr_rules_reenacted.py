"""Each ASR rule re-enacted with real processes on the agent's protection: Audit records and lets it run, Block
prevents, Warn prevents until an override is granted, Off does nothing, an exclusion exempts.

Rules decided before the exec (a server, office or browser process starting a shell) run on the on-access gate
over a tmpfs this test mounts: the exec is denied. Rules decided from the new process's command line run on the
telemetry path: the row is what the process sensor reads from /proc for the real process, and Block/Warn kill it
(reported Terminated, never Blocked)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.integration.agent.conftest import ListSink
from vigil.agent.actions.base import ActionSettings
from vigil.agent.asr_overrides import grant
from vigil.agent.protection import Protection
from vigil.agent.sensors.procfs import HashCache, UserNames, boot_time, read_process
from vigil.asr import AsrMode, AsrPolicy, AsrRule, Exclusion, bundle, find

pytestmark = pytest.mark.root


class Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("fanotify permission events, mounting and /etc/shadow need root")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _protection(tmpfs: Path, tmp_path: Path, sink: ListSink) -> Protection:
    settings = ActionSettings(tmp_path / "state", "https://127.0.0.1:1")
    settings.state_dir.mkdir()
    return Protection(settings, Clock(), sink, gate_marks=(str(tmpfs),))


def _apply(p: Protection, rule: AsrRule, mode: AsrMode, *exclusions: Exclusion) -> None:
    policy = AsrPolicy({rule.guid: mode}, rule_exclusions={rule.guid: exclusions} if exclusions else {})
    p.apply(bundle.to_json(1, policy, None, (), "t"))


def _actions(sink: ListSink, rule: AsrRule) -> list[str]:
    return [r["ActionType"].removeprefix(f"Asr{rule.name}") for r in sink.snapshot()
            if str(r.get("ActionType", "")).startswith(f"Asr{rule.name}")]


# --- rules decided before the exec: the gate denies it -------------------------------------------------------

@dataclass(frozen=True)
class PreExec:
    rule: str
    parent: str  # the name the parent's image has (a copy of bash under that name)


PRE_EXEC = [PreExec("ServerChildShell", "nginx"), PreExec("OfficePdfChildShell", "soffice.bin"),
            PreExec("BrowserChildShell", "firefox")]


@pytest.mark.parametrize("case", PRE_EXEC, ids=lambda c: c.rule)
def test_pre_exec_rule_reenacted(case: PreExec, tmpfs: Path, tmp_path: Path, sink: ListSink) -> None:
    rule = find(case.rule)
    apps = tmp_path / "opt"  # the parent lives off the tmpfs, so only the shell's exec reaches the gate
    apps.mkdir()
    parent = apps / case.parent
    shutil.copy("/bin/bash", parent)
    shell = tmpfs / "sh"
    shutil.copy("/bin/dash", shell)

    def spawn() -> bool:
        """The parent starts the shell; True when the shell ran."""
        done = subprocess.run([str(parent), "-c", f"{shell} -c 'exit 7'; echo $?"], capture_output=True,
                              text=True, check=False)
        return done.stdout.strip().endswith("7")

    p = _protection(tmpfs, tmp_path, sink)
    try:
        assert spawn()  # no bundle yet
        _apply(p, rule, AsrMode.BLOCK)
        assert not spawn() and _actions(sink, rule) == ["Blocked"]
        [row] = [r for r in sink.snapshot() if r["ActionType"] == f"Asr{rule.name}Blocked"]
        assert (row["FolderPath"], row["InitiatingProcessFolderPath"]) == (str(shell), str(parent))

        _apply(p, rule, AsrMode.WARN)
        assert not spawn() and _actions(sink, rule)[-1] == "Warned"
        grant(p.settings.state_dir, rule, datetime.now(UTC), "cli:test@host", path=str(shell))
        assert spawn()  # overridden
        assert _actions(sink, rule)[-1] == "WarnOverridden"

        _apply(p, rule, AsrMode.BLOCK, Exclusion(case.parent, "process"))
        before = len(sink.snapshot())
        assert spawn() and len(sink.snapshot()) == before  # the exclusion exempts, silently

        _apply(p, rule, AsrMode.AUDIT)
        assert p.gate is None and spawn()  # Audit is recorded by the telemetry path
        p.observe([{"table": "DeviceProcessEvents", "ActionType": "ProcessCreated", "FileName": "sh",
                    "FolderPath": str(shell), "ProcessId": 999_999, "InitiatingProcessFileName": case.parent,
                    "InitiatingProcessFolderPath": str(parent)}])
        assert _actions(sink, rule)[-1] == "Audited"

        _apply(p, rule, AsrMode.OFF)
        before = len(sink.snapshot())
        assert spawn() and len(sink.snapshot()) == before
    finally:
        p.stop()


# --- rules decided from the command line: the telemetry path terminates ----------------------------------------

@dataclass(frozen=True)
class PostExec:
    rule: str
    argv: Callable[[Path], list[str]]  # a long-running process whose command line the rule matches


POST_EXEC = [
    PostExec("CredentialStoreRead", lambda d: ["tail", "-f", "/etc/shadow"]),
    PostExec("DownloadPipedToShell", lambda d: ["sh", "-c", "curl -s http://127.0.0.1:9/x | sh; sleep 30; :"]),
    PostExec("KernelModuleLoad", lambda d: [str(d / "insmod"), "30"]),
    PostExec("ProcessMemoryAccess", lambda d: ["sh", "-c", "sleep 30; :", "/proc/1/mem"]),
]  # ExecFromTempOrRemovable is decided before the exec: tests/integration/agent/test_protection_gate.py


def _row(pid: int) -> dict[str, Any]:
    """The ProcessCreated row the process sensor writes, read from /proc as it reads it."""
    users, hashes, boot = UserNames(), HashCache(), boot_time()
    for _ in range(100):  # until the child has exec'd its program
        child = read_process(pid, users, hashes, boot)
        # The exe link changes before the new argv is in place: wait for both.
        if child.exe and "python" not in child.file_name and child.command_line and \
                "python" not in child.command_line:
            break
        time.sleep(0.01)
    parent = read_process(child.ppid, users, hashes, boot)
    created = datetime.fromtimestamp(child.start_time, UTC).isoformat() if child.start_time else None
    return {"table": "DeviceProcessEvents", "ActionType": "ProcessCreated", "FileName": child.file_name,
            "FolderPath": child.exe, "ProcessId": pid, "ProcessCommandLine": child.command_line,
            "ProcessCreationTime": created, "AccountName": child.account,
            "InitiatingProcessFileName": parent.file_name, "InitiatingProcessFolderPath": parent.exe,
            "InitiatingProcessId": parent.pid, "InitiatingProcessCommandLine": parent.command_line}


@pytest.mark.parametrize("case", POST_EXEC, ids=lambda c: c.rule)
def test_post_exec_rule_reenacted(case: PostExec, tmpfs: Path, tmp_path: Path, sink: ListSink) -> None:
    rule = find(case.rule)
    shutil.copy("/bin/sleep", tmpfs / "insmod")  # a program named insmod, in a temporary folder
    p = _protection(tmpfs, tmp_path, sink)
    running: list[subprocess.Popen[bytes]] = []

    def start(mode: AsrMode, *exclusions: Exclusion) -> bool:
        """Run the process under ``mode``; True when it is still alive after the agent saw it."""
        _apply(p, rule, mode, *exclusions)
        proc = subprocess.Popen(case.argv(tmpfs), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        running.append(proc)
        p.observe([_row(proc.pid)])
        try:
            proc.wait(0.3)
        except subprocess.TimeoutExpired:
            return True
        return False

    try:
        assert start(AsrMode.AUDIT) and _actions(sink, rule) == ["Audited"]
        [row] = [r for r in sink.snapshot() if r["ActionType"] == f"Asr{rule.name}Audited"]
        assert row["ProcessId"] == running[-1].pid and row["AdditionalFields"]["RuleId"] == rule.guid

        assert not start(AsrMode.BLOCK) and _actions(sink, rule)[-1] == "Terminated"  # killed, never "Blocked"
        assert not start(AsrMode.WARN) and _actions(sink, rule)[-1] == "Terminated"
        grant(p.settings.state_dir, rule, datetime.now(UTC), "cli:test@host")  # every match of the rule
        assert start(AsrMode.WARN)  # overridden: lets it run, recorded as Audited naming the override
        assert _actions(sink, rule)[-2:] == ["WarnOverridden", "Audited"]

        program = os.path.realpath(shutil.which(case.argv(tmpfs)[0]) or "")  # the executable, as the row names it
        before = len(sink.snapshot())
        assert start(AsrMode.BLOCK, Exclusion(program, "path")) and len(sink.snapshot()) == before
        assert start(AsrMode.OFF) and len(sink.snapshot()) == before
    finally:
        p.stop()
        for proc in running:
            proc.kill()
            proc.wait()
