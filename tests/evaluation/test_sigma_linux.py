"""SigmaHQ's Linux rules on Vigil's telemetry: nearly all have an event source; auditd's run on sensor rows."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.unit.detect.test_auditd import _exec, _file
from vigil.detect import RuleSet, load_rules

pytestmark = pytest.mark.evaluation

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("VIGIL_SHARED_DATA", REPO.parent / "shared" / "data"))
LINUX = DATA / "sigma" / "rules" / "linux"

if not LINUX.is_dir():
    pytest.skip(f"third-party corpus absent: {LINUX} (set VIGIL_SHARED_DATA)", allow_module_level=True)

# Rules left without a source, each for a reason the note gives: auditd record types and fields no sensor
# sees (rule keys, the syslog/mknod/sysinfo syscalls, SERVICE_STOP), and the `builtin` log services until
# the agent collects journald.
WITHOUT_SOURCE = {
    "lnx_auditd_susp_c2_commands.yml": "absent there: key",
    "lnx_auditd_network_service_scanning.yml": "key",
    "lnx_auditd_clean_disable_dmesg_logs_via_syslog.yml": "absent there: SYSCALL, a0",
    "lnx_auditd_susp_discovery_sysinfo_syscall.yml": "SYSCALL",
    "lnx_auditd_susp_special_file_creation_via_mknod_syscall.yml": "absent there: SYSCALL",
    "lnx_auditd_disable_system_firewall.yml": "absent there: unit",
}


def test_rules_without_an_event_source_are_few_and_say_why() -> None:
    report = load_rules([LINUX])
    assert report.ok
    unbound = {n.path.name: n.reason for n in report.notes if n.path is not None}
    for name, why in WITHOUT_SOURCE.items():
        assert why in unbound.get(name, ""), (name, unbound.get(name))
    others = {name: why for name, why in unbound.items() if name not in WITHOUT_SOURCE}
    # what is left is the `builtin` log services (sshd, cron, syslog...), journald collection's to map
    assert all("/builtin/" in str(n.path) for n in report.notes if n.path and n.path.name in others), others
    assert len(report.notes) <= 13


@pytest.fixture(scope="module")
def auditd() -> RuleSet:
    return load_rules([LINUX / "auditd"]).ruleset


@pytest.mark.parametrize(("table", "row", "rule"), [
    ("DeviceProcessEvents", _exec("xclip", "-selection", "clipboard", "-o"), "lnx_auditd_clipboard_collection.yml"),
    ("DeviceProcessEvents", _exec("chmod", "777", "/tmp/x"), "lnx_auditd_susp_cmds.yml"),
    ("DeviceProcessEvents", _exec("iptables", "-t", "nat", "-A", "PREROUTING", "--to-ports", "42391"),
     "lnx_auditd_bpfdoor_port_redirect.yml"),
    ("DeviceProcessEvents", _exec("whoami"), "lnx_auditd_user_discovery.yml"),
    ("DeviceProcessEvents", _exec("/tmp/.x/miner", path="/tmp/.x/miner"), "lnx_auditd_hidden_binary_execution.yml"),
    ("DeviceFileEvents", _file("FileModified", "/etc/ld.so.preload"), "lnx_auditd_ld_so_preload_mod.yml"),
    ("DeviceFileEvents", _file("FileCreated", "/etc/systemd/system/x.service"),
     "lnx_auditd_systemd_service_creation.yml"),
    ("DeviceFileEvents", _file("FileModified", "/home/bob/.bashrc"),
     "lnx_auditd_unix_shell_configuration_modification.yml"),
])
def test_auditd_execve_and_path_rules_fire_on_sensor_rows(auditd: RuleSet, table: str, row: dict[str, object],
                                                         rule: str) -> None:
    assert rule in {h.path.name for h in auditd.match_telemetry(table, row) if h.path is not None}
