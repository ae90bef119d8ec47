"""`vigil tvm scan` end to end as a real process, standalone (no server, no data dir), on feeds the test writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.tvm.corpus_support import DPKG_STATUS, PACKAGE_LOCK, REQUIREMENTS, write_corpus
from tests.unit.tvm.elf_fixture import go_binary
from tests.unit.tvm.rpm_fixture import package, write_rpmdb

KEYS = {"package", "ecosystem", "installed", "advisory", "aliases", "fixed", "severity", "kev", "epss"}


def vigil(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    return subprocess.run([sys.executable, "-m", "vigil", *args], capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    corpus = write_corpus(tmp_path / "vulns")
    (tmp_path / "status").write_text(DPKG_STATUS)
    (tmp_path / "requirements.txt").write_text(REQUIREMENTS)
    (tmp_path / "package-lock.json").write_text(json.dumps(PACKAGE_LOCK))
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages" / "demo_lib-1.5.dist-info"
    site.mkdir(parents=True)
    (site / "METADATA").write_text("Metadata-Version: 2.1\nName: demo_lib\nVersion: 1.5\n\nDescription\n")
    nm = tmp_path / "venv" / "app" / "node_modules" / "left-pad"
    nm.mkdir(parents=True)
    (nm / "package.json").write_text(json.dumps({"name": "left-pad", "version": "1.1.0"}))
    return {"corpus": corpus, "status": tmp_path / "status", "req": tmp_path / "requirements.txt",
            "lock": tmp_path / "package-lock.json", "path": tmp_path / "venv", "cache": tmp_path / "cache"}


def test_json_findings_from_a_raw_folder_with_every_inventory(inputs: dict[str, Path]) -> None:
    r = vigil("tvm", "scan", "--feeds", str(inputs["corpus"]), "--dpkg-status", str(inputs["status"]),
              "--debian-release", "12", "--requirements", str(inputs["req"]), "--lockfile", str(inputs["lock"]),
              "--output", "json", cache=inputs["cache"])
    assert r.returncode == 1, r.stderr  # findings
    findings = json.loads(r.stdout)
    for f in findings:
        assert set(f) >= KEYS, f
    got = {(f["package"], f["installed"], f["advisory"]) for f in findings}
    assert got == {
        ("openssl", "3.0.11-1~deb12u1", "DSA-5800-1"),
        ("openssl", "3.0.11-1~deb12u1", "DSA-5900-1"),
        ("demo_lib", "1.0.0", "PYSEC-2099-1"),
        ("left-pad", "1.3.0", "GHSA-npm1-0000-0000"),
    }
    dsa = next(f for f in findings if f["advisory"] == "DSA-5900-1")
    assert dsa["aliases"] == ["CVE-2099-0001", "CVE-2099-0002"] and dsa["fixed"] == "3.0.15-1~deb12u1"
    assert dsa["kev"] is True and dsa["epss"] == 0.91 and dsa["ecosystem"] == "Debian:12"
    assert "built the feed store" in r.stderr and "PYSEC-2099-9" in r.stderr  # the broken file named, not fatal
    # the second run reuses the cached store
    again = vigil("tvm", "scan", "--feeds", str(inputs["corpus"]), "--requirements", str(inputs["req"]),
                  "-o", "json", cache=inputs["cache"])
    assert again.returncode == 1 and "built the feed store" not in again.stderr
    assert [f["advisory"] for f in json.loads(again.stdout)] == ["PYSEC-2099-1"]


def test_path_walk_and_table_output(inputs: dict[str, Path]) -> None:
    r = vigil("tvm", "scan", "--feeds", str(inputs["corpus"]), "--path", str(inputs["path"]), cache=inputs["cache"])
    assert r.returncode == 1, r.stderr
    assert "PYSEC-2099-1" in r.stdout and "GHSA-npm1-0000-0000" in r.stdout and "CVE-2099-4000" in r.stdout
    assert "2 packages" in r.stderr and "2 findings" in r.stderr


def test_rpm_database_go_binaries_and_apk(inputs: dict[str, Path], tmp_path: Path) -> None:
    write_rpmdb(tmp_path / "rpm", [package("bash", "5.1.8", "6.el9"), package("zlib", "1.2.11", "40.el9")])
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin/tool").write_bytes(go_binary("go1.21.5", "mod\texample.com/mod\tv1.3.0\th1:x=\n"))
    (tmp_path / "bin/notes.txt").write_text("not a binary\n")
    (tmp_path / "installed").write_text("P:musl\nV:1.2.4-r2\nA:x86_64\no:musl\n\n")
    r = vigil("tvm", "scan", "--feeds", str(inputs["corpus"]), "--rpmdb", str(tmp_path / "rpm/rpmdb.sqlite"),
              "--rpm-ecosystem", "AlmaLinux:9", "--go-binary", str(tmp_path / "bin"), "--apk-installed",
              str(tmp_path / "installed"), "--alpine-release", "3.19.1", "-o", "json", cache=inputs["cache"])
    assert r.returncode == 1, r.stderr
    got = {(f["package"], f["ecosystem"], f["installed"], f["advisory"], f["fixed"]) for f in json.loads(r.stdout)}
    assert got == {("bash", "AlmaLinux:9", "5.1.8-6.el9", "ALSA-2099:0001", "5.1.8-9.el9"),
                   ("example.com/mod", "Go", "v1.3.0", "GO-2099-0001", "1.4.1")}
    assert "5 packages" in r.stderr  # 2 rpms, the module and Go's stdlib, musl
    refused = vigil("tvm", "scan", "--feeds", str(inputs["corpus"]), "--rpmdb", str(tmp_path / "rpm"),
                    "--rpm-ecosystem", "Fedora:40", cache=inputs["cache"])
    assert refused.returncode == 2 and "--rpm-ecosystem 'Fedora:40'" in refused.stderr
    not_go = vigil("tvm", "scan", "--feeds", str(inputs["corpus"]), "--go-binary", str(tmp_path / "bin/notes.txt"),
                   cache=inputs["cache"])
    assert not_go.returncode == 2 and "not a Go 1.18+ binary" in not_go.stderr


def test_no_finding_exits_zero_with_an_empty_json_list(inputs: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "clean.txt").write_text("demo-lib==2.0.0\n")
    r = vigil("tvm", "scan", "--feeds", str(inputs["corpus"]), "--requirements", str(tmp_path / "clean.txt"),
              "-o", "json", cache=inputs["cache"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "nothing to scan"),
        (("--requirements", "absent.txt"), "--requirements absent.txt: no such file"),
        (("--lockfile", "yarn.lock"), "unsupported lockfile"),
        (("--requirements", "unpinned.txt"), "unpinned.txt:1: not a pinned"),
    ],
)
def test_bad_input_exits_two_naming_it(inputs: dict[str, Path], args: tuple[str, ...], message: str,
                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "unpinned.txt").write_text("requests>=2\n")
    (tmp_path / "yarn.lock").write_text("")
    r = vigil("tvm", "scan", "--feeds", str(inputs["corpus"]), *args, cache=inputs["cache"])
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr and "Traceback" not in r.stderr


def test_a_missing_feeds_path_is_refused(inputs: dict[str, Path], tmp_path: Path) -> None:
    r = vigil("tvm", "scan", "--feeds", str(tmp_path / "nowhere"), "--requirements", str(inputs["req"]),
              cache=inputs["cache"])
    assert r.returncode == 2 and "--feeds" in r.stderr and "no such folder" in r.stderr
    bogus = tmp_path / "bogus.bin"
    bogus.write_bytes(b"\x00garbage")
    r = vigil("tvm", "scan", "--feeds", str(bogus), "--requirements", str(inputs["req"]), cache=inputs["cache"])
    assert r.returncode == 2 and "not a folder of feeds" in r.stderr and "Traceback" not in r.stderr
