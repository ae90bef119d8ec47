"""The rpm database: header blobs parsed from an rpmdb.sqlite the test writes, `rpm -qa --qf` output for older
databases, the host walk on an AlmaLinux tree, and the packages matched with RPM's version rules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.unit.tvm.rpm_fixture import header, package, write_rpmdb
from vigil.content.tvm_inventory import HostSources, collect_host, read_rpm_database
from vigil.tvm.feeds import FeedError
from vigil.tvm.inventory import read_rpm_header, read_rpm_query, rpm_ecosystem
from vigil.tvm.matching import match_advisory
from vigil.tvm.model import Advisory, Affected, Event, EventKind, Range
from vigil.tvm.purls import from_purl, to_purl


def test_headers_epoch_arch_and_signing_keys() -> None:
    p = read_rpm_header(package("openssl-libs", "3.0.7", "27.el9", epoch=1, source="openssl-3.0.7-27.el9.src.rpm"),
                        "db", "AlmaLinux:9")
    assert p is not None and (p.ecosystem, p.name, p.version, p.match_name) == (
        "AlmaLinux:9", "openssl-libs", "1:3.0.7-27.el9", "openssl-libs")  # AlmaLinux names binary packages
    assert p.extra == {"arch": "x86_64", "sourcerpm": "openssl-3.0.7-27.el9.src.rpm"}
    plain = read_rpm_header(package("bash", "5.1.8", "9.el9", epoch=0), "db", "AlmaLinux:9")
    assert plain is not None and plain.version == "5.1.8-9.el9"  # epoch 0 is not written, as the advisories do
    no_region = read_rpm_header(header({1000: "zlib", 1001: "1.2.11", 1002: "40.el9", 1022: "x86_64"},
                                       region=False), "db", "AlmaLinux:9")
    assert no_region is not None and no_region.version == "1.2.11-40.el9"
    assert read_rpm_header(header({1000: "gpg-pubkey", 1001: "b86b3716", 1002: "61e69f29"}), "db", "x") is None
    assert read_rpm_header(b"\x8e\xad\xe8\x01\0\0\0\0" + package("tar", "1.34", "6.el9"), "db", "x") is not None


def test_broken_headers_name_what_is_wrong() -> None:
    with pytest.raises(FeedError, match="shorter than its own length"):
        read_rpm_header(b"\0\0", "db#1", "AlmaLinux:9")
    with pytest.raises(FeedError, match="overrun"):
        read_rpm_header(package("tar", "1.34", "6.el9")[:-5], "db#2", "AlmaLinux:9")
    with pytest.raises(FeedError, match="without VERSION, RELEASE"):
        read_rpm_header(header({1000: "tar"}), "db#3", "AlmaLinux:9")


def test_rpm_query_output_and_the_ecosystem() -> None:
    text = ("curl\t0\t7.76.1\t26.el8\tx86_64\tcurl-7.76.1-26.el8.src.rpm\n"
            "gpg-pubkey\t0\tc21ad6ea\t5e8b3b9a\t(none)\t(none)\n"
            "NetworkManager\t1\t1.40.0\t1.el8\tx86_64\tNetworkManager-1.40.0-1.el8.src.rpm\n")
    got = read_rpm_query(text, "rpm -qa", "AlmaLinux:8")
    assert [(p.name, p.version) for p in got] == [("curl", "7.76.1-26.el8"), ("NetworkManager", "1:1.40.0-1.el8")]
    with pytest.raises(FeedError, match=r"rpm -qa:2: not a name/epoch"):
        read_rpm_query("curl\t0\t7.76.1\t26.el8\tx86_64\tx\ngarbage\n", "rpm -qa", "AlmaLinux:8")
    assert rpm_ecosystem("almalinux", "9.4") == "AlmaLinux:9"
    assert rpm_ecosystem("rocky", "8.9") == "Rocky Linux:8"
    assert rpm_ecosystem("fedora", "40") is None


def test_a_database_file_its_errors_and_the_rpm_binary(tmp_path: Path) -> None:
    write_rpmdb(tmp_path / "rpm", [package("openssl", "3.0.7", "24.el9", epoch=1), b"\0\0\0\x05junk",
                                   header({1000: "gpg-pubkey", 1001: "x", 1002: "y"})])
    got = read_rpm_database(tmp_path / "rpm", "AlmaLinux:9")
    assert [p.version for p in got.packages] == ["1:3.0.7-24.el9"]
    assert len(got.errors) == 1 and "rpmdb.sqlite#2" in str(got.errors[0])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad/rpmdb.sqlite").write_bytes(b"not a database at all" * 100)
    assert "cannot read the rpm database" in str(read_rpm_database(tmp_path / "bad", "AlmaLinux:9").errors[0])
    # an EL8 Berkeley DB is read through rpm itself: a real executable printing what rpm -qa --qf prints
    (tmp_path / "bdb").mkdir()
    (tmp_path / "bdb/Packages").write_bytes(b"\0" * 64)
    fake_rpm = tmp_path / "rpm-binary"
    fake_rpm.write_text('#!/bin/sh\n[ "$1 $2 $3" = "-qa --dbpath ' + str(tmp_path / "bdb") + '" ] || exit 3\n'
                        'printf "curl\\t0\\t7.61.1\\t30.el8\\tx86_64\\tcurl.src.rpm\\n"\n')
    fake_rpm.chmod(0o755)
    via = read_rpm_database(tmp_path / "bdb", "AlmaLinux:8", str(fake_rpm))
    assert [(p.name, p.version) for p in via.packages] == [("curl", "7.61.1-30.el8")] and via.errors == []
    failing = tmp_path / "rpm-failing"
    failing.write_text("#!/bin/sh\necho 'error: cannot open Packages index' >&2\nexit 1\n")
    failing.chmod(0o755)
    assert "exited 1: error: cannot open" in str(read_rpm_database(tmp_path / "bdb", "AlmaLinux:8",
                                                                    str(failing)).errors[0])
    assert read_rpm_database(tmp_path / "nothing", "AlmaLinux:9").packages == []


def test_an_almalinux_host_its_purls_and_rpm_version_rules(tmp_path: Path) -> None:
    (tmp_path / "os-release").write_text('ID="almalinux"\nVERSION_ID="9.4"\n')
    write_rpmdb(tmp_path / "var/lib/rpm", [package("openssl-libs", "3.0.7", "24.el9", epoch=1),
                                           package("bash", "5.1.8", "9.el9")])
    src = HostSources(dpkg_status=tmp_path / "none", apk_installed=tmp_path / "none", rpm_dir=tmp_path / "var/lib/rpm",
                      os_release=tmp_path / "os-release", roots=(), go_dirs=(), kernel=("5.14.0", "#1 SMP"))
    got = collect_host(src)
    assert got.errors == [] and str(tmp_path / "var/lib/rpm/rpmdb.sqlite") in got.watched
    rpms = [p for p in got.packages if p.name != "linux"]
    assert {(p.ecosystem, p.name, p.version) for p in rpms} == {
        ("AlmaLinux:9", "openssl-libs", "1:3.0.7-24.el9"), ("AlmaLinux:9", "bash", "5.1.8-9.el9")}
    ssl = next(p for p in rpms if p.name == "openssl-libs")
    purl = to_purl(ssl)
    assert purl.startswith("pkg:rpm/almalinux/openssl-libs@1:3.0.7-24.el9?") and "distro=almalinux-9" in purl
    assert from_purl(purl).version == ssl.version
    adv = Advisory("ALSA-2024:0001", ("CVE-2099-7000",), (Affected("AlmaLinux:9", "openssl-libs", (Range(
        "ECOSYSTEM", (Event(EventKind.INTRODUCED, "0"), Event(EventKind.FIXED, "1:3.0.7-25.el9"))),)),))
    assert match_advisory(ssl, adv) is not None  # 24 < 25 by rpmvercmp, same epoch
    newer = read_rpm_query("openssl-libs\t1\t3.0.7\t25.el9_3\tx86_64\tx.src.rpm\n", "q", "AlmaLinux:9")[0]
    assert match_advisory(newer, adv) is None  # 25.el9_3 sorts after 25.el9
    (tmp_path / "os-release").write_text("ID=fedora\nVERSION_ID=40\n")
    other = collect_host(src)
    assert not [p for p in other.packages if p.name != "linux"]
    assert any("names no AlmaLinux or Rocky Linux release" in e for e in other.errors)
    assert os.path.exists(tmp_path / "var/lib/rpm/rpmdb.sqlite")
