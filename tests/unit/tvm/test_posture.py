"""Weaknesses from scan findings (a CVE reached through several advisories is one weakness listing them all, its
fix the newest) and recommendations grouped by software, with exceptions taken out of the exposure."""

from __future__ import annotations

from vigil.tvm.feedstore import ScanFinding
from vigil.tvm.model import Package
from vigil.tvm.posture import (
    Exception_,
    criticality,
    device_exposure,
    device_weaknesses,
    organisation_exposure,
    recommendations,
)
from vigil.tvm.purls import to_purl

LIBSSL = Package("Debian:12", "libssl3", "3.0.11-1", "openssl", "3.0.11-1")
OPENSSL = Package("Debian:12", "openssl", "3.0.11-1", "openssl", "3.0.11-1")
DEMO = Package("PyPI", "demo-lib", "1.0.0")
PKGS = [(to_purl(p), p) for p in (LIBSSL, OPENSSL, DEMO)]


def _f(pkg: str, eco: str, installed: str, adv: str, cves: tuple[str, ...], fixed: str | None, kev: bool = False,
       binaries: tuple[str, ...] = ()) -> ScanFinding:
    return ScanFinding(pkg, eco, installed, adv, cves, fixed, "high", kev, None, f"{pkg} {installed} < {fixed}",
                       binaries)


FINDINGS = [
    _f("openssl", "Debian:12", "3.0.11-1", "DSA-1", ("CVE-1", "CVE-2"), "3.0.11-2", binaries=("libssl3", "openssl")),
    _f("openssl", "Debian:12", "3.0.11-1", "DLA-9", ("CVE-2",), "3.0.11-10", binaries=("libssl3", "openssl")),
    _f("demo-lib", "PyPI", "1.0.0", "PYSEC-1", (), None),
]


def test_a_cve_through_two_advisories_is_one_weakness_with_the_newest_fix() -> None:
    rows = device_weaknesses(PKGS, FINDINGS, lambda a: 9.8 if a == "DSA-1" else None, "normal",
                             kev_of=lambda c: c == "CVE-1", epss_of=lambda c: 0.5 if c == "CVE-2" else None)
    by = {(r["SoftwareName"], r["CveId"]): r for r in rows}
    assert set(by) == {("openssl", "CVE-1"), ("openssl", "CVE-2"), ("demo-lib", "PYSEC-1")}
    two = by[("openssl", "CVE-2")]
    assert two["AdvisoryIds"] == ["DLA-9", "DSA-1"]
    assert two["FixedVersion"] == "3.0.11-10"  # dpkg order, not text order ("3.0.11-2" sorts later as text)
    assert two["RecommendedSecurityUpdateId"] == "DLA-9" and two["EpssScore"] == 0.5
    assert not two["IsKnownExploited"] and by[("openssl", "CVE-1")]["IsKnownExploited"]  # the CVE's own KEV
    assert two["SoftwarePurl"] == "pkg:deb/debian/openssl@3.0.11-1?arch=source&distro=debian-12"
    assert "installed binaries: libssl3, openssl" in two["MatchReason"]
    assert two["VulnerabilitySeverityLevel"] == "Critical" and two["CvssScore"] == 9.8
    demo = by[("demo-lib", "PYSEC-1")]
    assert demo["FixedVersion"] is None and demo["CveTags"] == ["NoSecurityUpdate"]
    assert demo["SoftwarePurl"] == "pkg:pypi/demo-lib@1.0.0"


def test_criticality_tag_raises_the_risk() -> None:
    assert criticality(["web", "Criticality:High"]) == "high" and criticality(["criticality:extreme"]) == "normal"
    normal = device_weaknesses(PKGS, FINDINGS, lambda a: None, "normal")
    high = device_weaknesses(PKGS, FINDINGS, lambda a: None, "high")
    assert all(h["RiskScore"] > n["RiskScore"] for h, n in zip(high, normal, strict=True))


def test_recommendations_exposure_impact_and_exceptions() -> None:
    ws = []
    for dev, group in (("d1", 1), ("d2", 2)):
        for r in device_weaknesses(PKGS, FINDINGS, lambda a: 9.8, "normal", kev_of=lambda c: c == "CVE-1"):
            ws.append({**r, "DeviceId": dev, "group_id": group})
    scores = {"d1": device_exposure([w for w in ws if w["DeviceId"] == "d1"]),
              "d2": device_exposure([w for w in ws if w["DeviceId"] == "d2"]), "d3": 0}
    recs = recommendations(ws, scores, [])
    assert [r["id"] for r in recs] == ["va-_-debian-_-openssl", "va-_-pypi-_-demo-lib"]  # bigger impact first
    top = recs[0]
    assert (top["remediationType"], top["recommendedVersion"], top["exposedMachinesCount"]) == ("Update", "3.0.11-10",
                                                                                               2)
    assert top["summary"] == "upgrade source package openssl to ≥ 3.0.11-10 on 2 devices: fixes 2 CVEs, 1 in KEV"
    assert 0 < top["exposureImpact"] <= organisation_exposure(scores)
    assert recs[1]["remediationType"] == "Uninstall" and recs[1]["recommendedVersion"] is None
    exc = [Exception_("va-_-debian-_-openssl", frozenset({1}))]
    assert device_exposure([w for w in ws if w["DeviceId"] == "d1"], exc) < scores["d1"]
    assert device_exposure([w for w in ws if w["DeviceId"] == "d2"], exc) == scores["d2"]  # another group
    partly = next(r for r in recommendations(ws, scores, exc) if r["id"] == "va-_-debian-_-openssl")
    assert (partly["status"], partly["exposedMachinesCount"]) == ("Active", 1)
    everywhere = [Exception_("va-_-debian-_-openssl", None)]
    assert next(r for r in recommendations(ws, scores, everywhere)
                if r["id"] == "va-_-debian-_-openssl")["status"] == "Exception"
