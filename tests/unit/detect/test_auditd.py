"""auditd rules on Vigil's own telemetry: EXECVE, PATH and SYSCALL records made from the sensors' rows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tests.unit.detect.support import report_for
from vigil.agent.sensors.procfs import join_argv
from vigil.detect import RuleSet

AUDITD = "product: linux\nservice: auditd"
WHEN = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)


def _exec(*argv: str, path: str | None = None, uid: int = 1000) -> dict[str, Any]:
    """A DeviceProcessEvents row as ingest hands it to detection: the agent joins argv with shell quoting."""
    exe = path or f"/usr/bin/{argv[0].rpartition('/')[2]}"
    return {"Timestamp": WHEN, "DeviceId": "d1", "ActionType": "ProcessCreated", "ReportId": 7,
            "FileName": exe.rpartition("/")[2], "FolderPath": exe, "ProcessId": 4242,
            "ProcessCommandLine": join_argv(list(argv)), "AccountName": "alice", "ProcessPosixUserId": uid,
            "InitiatingProcessId": 100, "InitiatingProcessFolderPath": "/usr/bin/bash",
            "AdditionalFields": {"Source": "audit"}}


def _file(action: str, path: str) -> dict[str, Any]:
    return {"Timestamp": WHEN, "DeviceId": "d1", "ActionType": action, "ReportId": 8, "FolderPath": path,
            "FileName": path.rpartition("/")[2], "InitiatingProcessId": 4242,
            "InitiatingProcessFolderPath": "/usr/bin/vim", "InitiatingProcessFileName": "vim"}


def _hits(rules: RuleSet, table: str, row: dict[str, Any]) -> bool:
    return bool(rules.match_telemetry(table, row))


def test_execve_arguments_come_from_the_command_line_words() -> None:
    rules = report_for("""
        selection:
          type: 'EXECVE'
          a0: xclip
          a1: ['-selection', '-sel']
          a2: clipboard
          a3: '-o'
        condition: selection
    """, logsource=AUDITD).ruleset
    assert _hits(rules, "DeviceProcessEvents", _exec("xclip", "-selection", "clipboard", "-o"))
    assert not _hits(rules, "DeviceProcessEvents", _exec("xclip", "-selection", "clipboard"))  # a3 absent
    assert not _hits(rules, "DeviceProcessEvents", _exec("xclip", "-selection clipboard", "-o"))  # one quoted word


def test_execve_quoted_words_keyword_and_argc() -> None:
    rules = report_for("""
        selection:
          type: 'execve'
          a0|endswith: 'grep'
          argc: 3
        keywords:
          - 'password'
        condition: selection and keywords
    """, logsource=AUDITD).ruleset
    row = _exec("grep", "-r", "my password")
    assert row["ProcessCommandLine"] == "grep -r 'my password'"
    assert _hits(rules, "DeviceProcessEvents", row)
    assert not _hits(rules, "DeviceProcessEvents", _exec("grep", "-r", "-i", "password"))  # argc 4


def test_path_records_from_file_events_with_their_nametype() -> None:
    rules = report_for("""
        path:
          type: 'PATH'
          nametype: 'CREATE'
        name:
          name|startswith: '/etc/systemd/system/'
        condition: path and name
    """, logsource=AUDITD).ruleset
    assert _hits(rules, "DeviceFileEvents", _file("FileCreated", "/etc/systemd/system/evil.service"))
    assert not _hits(rules, "DeviceFileEvents", _file("FileModified", "/etc/systemd/system/evil.service"))
    assert not _hits(rules, "DeviceFileEvents", _file("FileCreated", "/tmp/evil.service"))


def test_path_of_an_executable_and_a_filter() -> None:
    rules = report_for("""
        selection:
          type: 'PATH'
          name|contains: '/.'
        filter:
          name|contains: '/.cache/'
        condition: selection and not filter
    """, logsource=AUDITD).ruleset
    assert _hits(rules, "DeviceProcessEvents", _exec("x", path="/tmp/.hidden/x"))
    assert _hits(rules, "DeviceFileEvents", _file("FileModified", "/home/a/.secret"))
    assert not _hits(rules, "DeviceProcessEvents", _exec("x", path="/home/a/.cache/x"))


def test_syscall_records_of_execs_and_connections() -> None:
    web_rce = report_for("""
        selection:
          type: 'SYSCALL'
          SYSCALL: ['execve', 'execveat']
          euid: 33
        condition: selection
    """, logsource=AUDITD).ruleset
    assert _hits(web_rce, "DeviceProcessEvents", _exec("sh", "-c", "id", path="/usr/bin/dash", uid=33))
    assert not _hits(web_rce, "DeviceProcessEvents", _exec("sh", "-c", "id", path="/usr/bin/dash"))
    insmod = report_for("""
        selection:
          type: 'SYSCALL'
          comm: insmod
          exe: /usr/bin/kmod
        condition: selection
    """, logsource=AUDITD).ruleset
    # comm is the name the program was started by (argv[0]'s base name), exe the resolved file
    assert _hits(insmod, "DeviceProcessEvents", _exec("/sbin/insmod", "rootkit.ko", path="/usr/bin/kmod"))
    assert not _hits(insmod, "DeviceProcessEvents", _exec("kmod", "list", path="/usr/bin/kmod"))


def test_a_syscall_no_sensor_sees_leaves_the_rule_without_a_source() -> None:
    report = report_for("""
        selection:
          type: 'SYSCALL'
          SYSCALL: 'mknod'
        condition: selection
    """, logsource=AUDITD)
    assert len(report.notes) == 1
    assert "no branch can match" in report.notes[0].reason and "SYSCALL=execve" in report.notes[0].reason


def test_initiated_on_network_events() -> None:
    rules = report_for("""
        selection:
          Initiated: 'true'
          DestinationPort: 4444
        condition: selection
    """, logsource="product: linux\ncategory: network_connection").ruleset
    out = {"Timestamp": WHEN, "ActionType": "ConnectionSuccess", "RemoteIP": "203.0.113.9", "RemotePort": 4444}
    assert _hits(rules, "DeviceNetworkEvents", out)
    assert not _hits(rules, "DeviceNetworkEvents", {**out, "ActionType": "InboundConnectionAccepted"})
