"""Inventory sources beyond dpkg: apk, Go build info (a real ELF layout the test writes), the running kernel,
package URLs both ways, and a whole host read from a fixture tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.tvm.elf_fixture import go_binary
from vigil.content.tvm_inventory import HostSources, collect_host
from vigil.tvm.feeds import FeedError
from vigil.tvm.inventory import go_buildinfo_section, read_apk_installed, read_go_buildinfo, running_kernel
from vigil.tvm.model import Package
from vigil.tvm.purls import PART_CHARS, PurlError, from_purl, inventory_parts, to_purl

MODINFO = ("path\texample.com/cmd/tool\nmod\texample.com/tool\tv1.4.0\th1:x=\n"
           "dep\tgolang.org/x/net\tv0.1.0\th1:y=\n=>\tgolang.org/x/net\tv0.17.0\th1:z=\n"
           "dep\tgithub.com/a/b\tv2.0.1+incompatible\th1:w=\nbuild\t-compiler=gc\n")


def _section(data: bytes) -> bytes | None:
    return go_buildinfo_section(data[:64], lambda off, size: data[off:off + size])


def test_go_build_info_modules_replacements_and_stdlib() -> None:
    info = read_go_buildinfo(_section(go_binary("go1.21.5", MODINFO)) or b"", "tool")
    assert [(p.name, p.version) for p in info.packages()] == [
        ("example.com/tool", "v1.4.0"), ("golang.org/x/net", "v0.17.0"),  # the replacement, not v0.1.0
        ("github.com/a/b", "v2.0.1+incompatible"), ("stdlib", "1.21.5")]


def test_not_go_and_old_go_binaries() -> None:
    assert _section(b"#!/bin/sh\necho hi\n" + bytes(64)) is None
    plain = bytearray(go_binary("go1.21.5", MODINFO))
    assert _section(bytes(plain).replace(b".go.buildinfo", b".go.buildinfX")) is None
    old = bytearray(_section(bytes(plain)) or b"")
    old[15] = 0  # pointer-format build info (Go < 1.18)
    with pytest.raises(FeedError, match=r"before Go 1\.18"):
        read_go_buildinfo(bytes(old), "old")


def test_apk_installed_with_origin() -> None:
    text = "C:Q1x\nP:libcrypto3\nV:3.1.4-r5\nA:x86_64\no:openssl\n\nP:busybox\nV:1.36.1-r15\n"
    pkgs = read_apk_installed(text, "installed", "3.19")
    assert [(p.ecosystem, p.name, p.match_name, p.match_version) for p in pkgs] == [
        ("Alpine:v3.19", "libcrypto3", "openssl", "3.1.4-r5"), ("Alpine:v3.19", "busybox", "busybox", "1.36.1-r15")]
    with pytest.raises(FeedError, match=r"installed:1: .*without P:"):
        read_apk_installed("V:1\n", "installed", "3.19")


def test_running_kernel_on_debian_is_the_linux_source_version() -> None:
    k = running_kernel("6.1.0-18-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)", "Debian:12")
    assert (k.ecosystem, k.match_name, k.match_version) == ("Debian:12", "linux", "6.1.76-1")
    other = running_kernel("6.8.0", "#1 SMP", None)
    assert (other.ecosystem, other.source_version) == ("Linux", None)


@pytest.mark.parametrize("pkg", [
    Package("Debian:12", "libssl3", "3.0.11-1~deb12u2+b1", "openssl", "3.0.11-1~deb12u2", {"arch": "amd64"}),
    Package("Debian:12", "bash", "5.2.15-2+b2", "bash", "5.2.15-2+b2"),
    Package("Debian:12", "libc6", "2.36-9", "glibc", "2.36-9"),
    Package("Alpine:v3.19", "libcrypto3", "3.1.4-r5", "openssl", "3.1.4-r5"),
    Package("AlmaLinux:9", "openssl-libs", "1:3.0.7-27.el9", "openssl", "1:3.0.7-27.el9"),
    Package("PyPI", "requests", "2.31.0"),
    Package("npm", "@babel/core", "7.22.0"),
    Package("Go", "golang.org/x/net", "v0.17.0"),
    Package("Go", "stdlib", "1.21.5"),
    running_kernel("6.1.0-18-amd64", "#1 SMP Debian 6.1.76-1 (2024-02-01)", "Debian:12"),
])
def test_purls_round_trip(pkg: Package) -> None:
    back = from_purl(to_purl(pkg))
    assert (back.ecosystem, back.name, back.version, back.match_name, back.match_version) == (
        pkg.ecosystem, pkg.name, pkg.version, pkg.match_name, pkg.match_version)


def test_purl_spelling_and_errors() -> None:
    assert to_purl(Package("Debian:12", "libssl3", "3.0.11-1~deb12u2+b1", "openssl", "3.0.11-1~deb12u2")) == (
        "pkg:deb/debian/libssl3@3.0.11-1~deb12u2%2Bb1?distro=debian-12&upstream=openssl%403.0.11-1~deb12u2")
    with pytest.raises(PurlError, match="no version"):
        from_purl("pkg:pypi/requests")
    with pytest.raises(PurlError, match="distro=debian-"):
        from_purl("pkg:deb/debian/bash@5.2")
    with pytest.raises(PurlError, match="not one Vigil matches"):
        from_purl("pkg:maven/org.a/b@1.0")
    with pytest.raises(PurlError, match="not a package URL"):
        from_purl("requests==2.0")


def test_inventory_parts_stay_under_a_rows_dynamic_limit() -> None:
    added = [f"pkg:pypi/package-number-{i}@1.0.{i}" for i in range(5000)]
    parts = inventory_parts("s", 3, 2, added, ["pkg:pypi/gone@1.0"])
    assert len(parts) > 1 and [p["Part"] for p in parts] == list(range(1, len(parts) + 1))
    assert all(p["Parts"] == len(parts) and p["Base"] == 2 and not p["Full"] for p in parts)
    assert [x for p in parts for x in p["Added"]] == added
    assert [x for p in parts for x in p["Removed"]] == ["pkg:pypi/gone@1.0"]
    import json
    assert max(len(json.dumps(p)) for p in parts) <= PART_CHARS + 200 < 65_536  # MAX_DYNAMIC_CHARS
    assert inventory_parts("s", 1, None, [], []) == [{"Series": "s", "Generation": 1, "Base": None, "Full": True,
                                                      "Part": 1, "Parts": 1, "Added": [], "Removed": []}]


def write_host(root: Path) -> HostSources:
    """A fixture host: dpkg status, a virtualenv, a Debian-owned dist-packages (pruned), npm, a Go binary."""
    (root / "etc").mkdir(parents=True)
    (root / "etc/os-release").write_text('ID=debian\nVERSION_ID="12"\n')
    (root / "status").write_text("Package: libssl3\nStatus: install ok installed\nSource: openssl (3.0.11-1)\n"
                                 "Version: 3.0.11-1+b1\n\nPackage: bash\nStatus: install ok installed\n"
                                 "Version: 5.2.15-2\n")
    site = root / "opt/app/venv/lib/python3.11/site-packages"
    (site / "requests-2.31.0.dist-info").mkdir(parents=True)
    (site / "requests-2.31.0.dist-info/METADATA").write_text("Metadata-Version: 2.1\nName: requests\n"
                                                             "Version: 2.31.0\n\nbody\n")
    debian_owned = root / "usr/lib/python3/dist-packages/urllib3-1.26.12.dist-info"
    debian_owned.mkdir(parents=True)
    (debian_owned / "METADATA").write_text("Name: urllib3\nVersion: 1.26.12\n")
    mod = root / "srv/web/node_modules/lodash"
    mod.mkdir(parents=True)
    (mod / "package.json").write_text('{"name": "lodash", "version": "4.17.20"}')
    (root / "bin").mkdir()
    (root / "bin/tool").write_bytes(go_binary("go1.21.5", MODINFO))
    (root / "bin/script").write_text("#!/bin/sh\n")
    return HostSources(dpkg_status=root / "status", apk_installed=root / "none", rpm_dir=root / "none",
                       os_release=root / "etc/os-release",
                       roots=(root / "opt", root / "srv", root / "usr/lib"),
                       exclude=(str(root / "usr/lib/python3/dist-packages"),), go_dirs=(root / "bin",),
                       kernel=("6.1.0-18-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)"))


def test_a_whole_host_from_a_fixture_tree(tmp_path: Path) -> None:
    got = collect_host(write_host(tmp_path))
    assert got.errors == []
    names = {(p.ecosystem, p.name, p.version) for p in got.packages}
    assert names == {
        ("Debian:12", "libssl3", "3.0.11-1+b1"), ("Debian:12", "bash", "5.2.15-2"), ("PyPI", "requests", "2.31.0"),
        ("npm", "lodash", "4.17.20"), ("Go", "example.com/tool", "v1.4.0"), ("Go", "golang.org/x/net", "v0.17.0"),
        ("Go", "github.com/a/b", "v2.0.1+incompatible"), ("Go", "stdlib", "1.21.5"),
        ("Debian:12", "linux", "6.1.0-18-amd64")}  # urllib3 is Debian's: pruned
    assert str(tmp_path / "status") in got.watched
    assert str(tmp_path / "opt/app/venv/lib/python3.11/site-packages") in got.watched
