"""`vigil tvm scan` on this machine's own /var/lib/dpkg/status against the Debian security tracker's DSA/DLA
lists: it reports its findings with their advisories, and each is checked against dpkg itself — every finding
is an installed source version below the advisory's fix (`dpkg --compare-versions`), and every installed source
package below a bookworm fix in the lists is a finding (nothing missed)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.evaluation

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("VIGIL_SHARED_DATA", REPO.parent / "shared" / "data"))
TRACKER = DATA / "vulns" / "debian-security-tracker"
STATUS = Path("/var/lib/dpkg/status")
RELEASE_NAMES = {"12": "bookworm", "11": "bullseye", "13": "trixie"}

if not TRACKER.is_dir():
    pytest.skip(f"third-party corpus absent: {TRACKER} (set VIGIL_SHARED_DATA)", allow_module_level=True)
if not STATUS.is_file() or shutil.which("dpkg") is None:
    pytest.skip("not a dpkg system: no /var/lib/dpkg/status", allow_module_level=True)


def _release() -> str:
    fields = dict(x.split("=", 1) for x in Path("/etc/os-release").read_text().splitlines() if "=" in x)
    if fields.get("ID", "").strip('"') != "debian":
        pytest.skip("this host is not Debian")
    return fields.get("VERSION_ID", "").strip('"')


def _dpkg_lt(a: str, b: str) -> bool:
    return subprocess.run(["dpkg", "--compare-versions", a, "lt", b]).returncode == 0


def _tracker_fixes(codename: str) -> dict[str, list[tuple[str, str]]]:
    """source package -> [(fixed version, advisory)] for the release, read independently of Vigil's parser."""
    fixes: dict[str, list[tuple[str, str]]] = {}
    header = re.compile(r"^\[[^]]+\] ((?:DSA|DLA)-[\d-]+)")
    for name in ("DSA", "DLA"):
        current = ""
        for line in (TRACKER / name / "list").read_text().splitlines():
            if m := header.match(line):
                current = m.group(1)
            elif (m := re.match(rf"^\s+\[{codename}\] - (\S+) ([^<\s]\S*)", line)) and current:
                fixes.setdefault(m.group(1), []).append((m.group(2), current))
    return fixes


def test_scan_of_this_machine_matches_dpkg(tmp_path: Path) -> None:
    release = _release()
    codename = RELEASE_NAMES.get(release.split(".")[0])
    if codename is None:
        pytest.skip(f"Debian {release}: no codename known to this test")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "vigil", "tvm", "scan", "--dpkg-status", str(STATUS), "--feeds",
                        str(TRACKER), "--output", "json"], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode in (0, 1), r.stderr
    findings = json.loads(r.stdout)
    advisories = sorted({f["advisory"] for f in findings})
    print(f"\n{len(findings)} findings, {len(advisories)} advisories: {', '.join(advisories) or '-'}")
    print(r.stderr.strip().splitlines()[-1])

    installed: dict[str, str] = {}
    query = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}|${source:Package}|${source:Version}\n"],
                           capture_output=True, text=True, check=True).stdout
    for line in query.splitlines():
        status, src, version = line.split("|")
        if status.startswith("ii"):
            installed[src] = version
    fixes = _tracker_fixes(codename)
    for f in findings:  # every finding is real: the installed source version is below that advisory's fix
        assert f["ecosystem"] == f"Debian:{release.split('.')[0]}"
        assert installed[f["package"]] == f["installed"], f
        assert (f["fixed"], f["advisory"]) in fixes[f["package"]], f
        assert _dpkg_lt(f["installed"], f["fixed"]), f
    expected = {
        (src, adv)
        for src, version in installed.items()
        for fixed, adv in fixes.get(src, [])
        if _dpkg_lt(version, fixed)
    }
    assert {(f["package"], f["advisory"]) for f in findings} == expected  # nothing missed, nothing extra
    checked = sorted(s for s in installed if s in fixes)
    print(f"{len(checked)} installed source packages have {codename} fixes in the lists; all compared with dpkg")
    assert checked, "no installed source package is in the tracker's lists: the comparison proved nothing"


def test_scan_of_this_virtualenv_against_pypa(tmp_path: Path) -> None:
    """The Python distributions of the interpreter running the tests against the PyPA advisories: each finding's
    installed version is below its fix by PEP 440 (`packaging`, not univers) and really installed here."""
    from importlib.metadata import distributions

    from packaging.version import Version

    pypa = DATA / "vulns" / "pypa-advisory-database"
    if not pypa.is_dir():
        pytest.skip(f"third-party corpus absent: {pypa}")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "vigil", "tvm", "scan", "--path", sys.prefix, "--feeds", str(pypa),
                        "--output", "json"], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode in (0, 1), r.stderr
    findings = json.loads(r.stdout)
    print(f"\n{len(findings)} findings: " + ", ".join(f"{f['package']} {f['installed']} {f['advisory']}"
                                                   for f in findings))
    here = {(d.metadata["Name"].lower().replace("_", "-"), d.version) for d in distributions()}
    for f in findings:
        assert (f["package"].lower().replace("_", "-"), f["installed"]) in here, f
        if f["fixed"]:
            assert Version(f["installed"]) < Version(f["fixed"]), f
