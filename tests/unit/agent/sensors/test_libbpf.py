"""Finding the cgroup-v2 root that cgroup programs attach to, from mountinfo text the tests write."""

from __future__ import annotations

from pathlib import Path

import pytest

from vigil.agent.sensors.libbpf import cgroup2_root

V1 = "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime shared:9 - cgroup cgroup rw,name=systemd\n"
HYBRID = "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw\n"
UNIFIED = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
PROC = "22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n"


def mountinfo(tmp_path: Path, *lines: str) -> str:
    path = tmp_path / "mountinfo"
    path.write_text("".join(lines))
    return str(path)


@pytest.mark.parametrize(("lines", "root"), [
    ((PROC, UNIFIED), "/sys/fs/cgroup"),
    ((PROC, V1, HYBRID), "/sys/fs/cgroup/unified"),  # v1 controllers beside a v2 hierarchy
    ((PROC, V1), None),  # v1 only
    (("50 30 0:26 /system.slice/x.service /run/cg rw - cgroup2 cgroup2 rw\n", UNIFIED), "/sys/fs/cgroup"),
    (("50 30 0:26 /system.slice /run/cg rw - cgroup2 cgroup2 rw\n",), "/run/cg"),  # only a subtree is mounted
    (("60 1 0:40 / /mnt/my\\040cgroups rw master:1 - cgroup2 none rw\n",), "/mnt/my cgroups"),  # escaped space
    (("garbage\n", "61 1 0:41 / /x rw\n", UNIFIED), "/sys/fs/cgroup"),  # lines without a separator are skipped
])
def test_the_cgroup2_root_is_found_in_mountinfo(tmp_path: Path, lines: tuple[str, ...], root: str | None) -> None:
    assert cgroup2_root(mountinfo(tmp_path, *lines)) == root


def test_this_hosts_mountinfo_parses() -> None:
    root = cgroup2_root()
    assert root is None or Path(root, "cgroup.procs").exists()
