"""From scan findings to a device's weaknesses (one per package and CVE, with every advisory that reaches it),
and from weaknesses to security recommendations grouped by remediation, with their effect on exposure.

Pure functions over plain values; the service (`vigil.app.tvm`) reads and writes the rows."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from packageurl import PackageURL

from vigil.tvm.feedstore import ScanFinding
from vigil.tvm.model import Package
from vigil.tvm.purls import to_purl
from vigil.tvm.scores import CRITICALITY, exposure_score, finding_risk
from vigil.tvm.version_schemes import InvalidVersion, UnknownEcosystem, scheme_for

CRITICALITY_TAG = "criticality:"  # a device tag "criticality:high" sets its criticality (low/normal/high/very high)
_LABEL = {"critical": "Critical", "high": "High", "important": "High", "medium": "Medium", "moderate": "Medium",
          "low": "Low"}
_RANK = {"Critical": 4, "High": 3, "Medium": 2, "Low": 1}


def criticality(tags: Iterable[str]) -> str:
    for t in tags:
        if t.lower().startswith(CRITICALITY_TAG) and t[len(CRITICALITY_TAG):].strip().lower() in CRITICALITY:
            return t[len(CRITICALITY_TAG):].strip().lower()
    return "normal"


def severity_label(cvss: float | None, vendor: str | None) -> str | None:
    if cvss is not None:
        return "Critical" if cvss >= 9 else "High" if cvss >= 7 else "Medium" if cvss >= 4 else "Low"
    return _LABEL.get((vendor or "").lower())


def _newest(ecosystem: str, versions: Iterable[str]) -> str | None:
    vs = list(dict.fromkeys(versions))
    if not vs:
        return None
    try:
        scheme = scheme_for(ecosystem)
        return max(vs, key=scheme.parse)
    except (InvalidVersion, UnknownEcosystem):
        return max(vs)


def _software_purl(finding: ScanFinding, members: Sequence[tuple[str, Package]]) -> str:
    """The purl a weakness is filed under: the installed package's, or for a distro package reached through its
    source package, the source package's own (arch=source)."""
    if len(members) == 1 and members[0][1].name == finding.package:
        return members[0][0]
    p = members[0][1]
    src = Package(p.ecosystem, finding.package, finding.installed, extra={"arch": "source"})
    try:
        return to_purl(src)
    except ValueError:
        return PackageURL(type="generic", name=finding.package, version=finding.installed).to_string()


def device_weaknesses(packages: Sequence[tuple[str, Package]], findings: Sequence[ScanFinding],
                      cvss_of: Callable[[str], float | None], device_criticality: str,
                      kev_of: Callable[[str], bool] | None = None,
                      epss_of: Callable[[str], float | None] | None = None) -> list[dict[str, Any]]:
    """One DeviceTvmSoftwareVulnerabilities row (device columns left to the store) per package and CVE; an
    advisory naming no CVE is its own weakness. A CVE several advisories reach is one row listing them all; its
    fix is the newest fixed version among them (the one that clears every advisory). KEV and EPSS are the CVE's
    own (``kev_of``, ``epss_of``), not its advisory's, which may name other CVEs."""
    by_match: dict[tuple[str, str, str], list[tuple[str, Package]]] = {}
    for purl, p in packages:
        by_match.setdefault((p.ecosystem, p.match_name, p.match_version), []).append((purl, p))
    grouped: dict[tuple[str, str], dict[str, Any]] = {}
    for f in findings:
        members = by_match.get((f.ecosystem, f.package, f.installed))
        if not members:
            continue
        purl = _software_purl(f, members)
        cvss = cvss_of(f.advisory)
        for cve in f.aliases or (f.advisory,):
            w = grouped.setdefault((purl, cve), {"finding": f, "advisories": [], "fixes": {}, "cvss": None,
                                                 "severity": None, "why": []})
            w["advisories"].append(f.advisory)
            if f.fixed:
                w["fixes"][f.fixed] = f.advisory
            if cvss is not None and (w["cvss"] is None or cvss > w["cvss"]):
                w["cvss"] = cvss
            label = severity_label(None, f.severity)
            if label and (w["severity"] is None or _RANK[label] > _RANK[w["severity"]]):
                w["severity"] = label
            w["why"].append(f"{f.advisory}: {f.why}")
            own = cve.startswith("CVE-") and kev_of is not None
            w["kev"] = w.get("kev", False) or (kev_of(cve) if own and kev_of else f.kev)
            e = epss_of(cve) if own and epss_of else f.epss
            w["epss"] = max((x for x in (w.get("epss"), e) if x is not None), default=None)
    rows = []
    for (purl, cve), w in sorted(grouped.items()):
        f = w["finding"]
        fixed = _newest(f.ecosystem, w["fixes"])
        sev = severity_label(w["cvss"], None) or w["severity"]
        kev, epss = bool(w["kev"]), w["epss"]
        tags = (["ExploitedInTheWild"] if kev else []) + ([] if fixed else ["NoSecurityUpdate"])
        why = "; ".join(w["why"])
        if f.binaries:
            why += f" (installed binaries: {', '.join(f.binaries)})"
        rows.append({
            "SoftwareVendor": vendor_name(f.ecosystem), "SoftwareName": f.package, "SoftwareVersion": f.installed,
            "CveId": cve, "VulnerabilitySeverityLevel": sev,
            "RecommendedSecurityUpdate": f"Upgrade {f.package} to {fixed}" if fixed else None,
            "RecommendedSecurityUpdateId": w["fixes"].get(fixed) if fixed else None,
            "CveTags": tags, "CveMitigationStatus": "", "SoftwarePurl": purl, "Ecosystem": f.ecosystem,
            "AdvisoryIds": sorted(set(w["advisories"])), "FixedVersion": fixed, "MatchReason": why[:4000],
            "CvssScore": w["cvss"], "EpssScore": epss, "IsKnownExploited": kev,
            "RiskScore": finding_risk(w["cvss"], sev, epss, kev, fixed is not None, device_criticality),
        })
    return rows


_VENDORS = {"Debian": "debian", "AlmaLinux": "almalinux", "Alpine": "alpine", "PyPI": "pypi", "npm": "npm",
            "Go": "golang", "Linux": "linux"}


def vendor_name(ecosystem: str) -> str:
    family = ecosystem.split(":", 1)[0]
    return _VENDORS.get(family, family.lower())


def software_id(vendor: str, name: str) -> str:
    """Defender's software id form, vendor-_-name."""
    return f"{vendor}-_-{name}"


def recommendation_id(vendor: str, name: str) -> str:
    return f"va-_-{vendor}-_-{name}"


@dataclass(frozen=True, slots=True)
class Exception_:
    """An exception on a recommendation, as scoring sees it: the groups it covers (None: every group)."""

    recommendation_id: str
    group_ids: frozenset[int] | None


def excepted(rec_id: str, group_id: int, exceptions: Sequence[Exception_]) -> bool:
    return any(e.recommendation_id == rec_id and (e.group_ids is None or group_id in e.group_ids)
               for e in exceptions)


def device_exposure(weaknesses: Iterable[Mapping[str, Any]], exceptions: Sequence[Exception_] = ()) -> int:
    """A device's exposure score over its weaknesses that no exception covers."""
    return exposure_score(w["RiskScore"] for w in weaknesses
                          if not excepted(recommendation_id(w["SoftwareVendor"], w["SoftwareName"]), w["group_id"],
                                          exceptions))


def organisation_exposure(device_scores: Mapping[str, int]) -> int:
    """The organisation's exposure: the mean of its devices' scores (devices without weaknesses count 0)."""
    return round(sum(device_scores.values()) / len(device_scores)) if device_scores else 0


def recommendations(weaknesses: Sequence[Mapping[str, Any]], device_scores: Mapping[str, int],
                    exceptions: Sequence[Exception_]) -> list[dict[str, Any]]:
    """Security recommendations with Defender's fields, one per software (vendor and package; for distro packages
    the source package), ordered by exposure impact: what the organisation's exposure score would drop by if the
    software were updated on every exposed device."""
    by_rec: dict[str, list[Mapping[str, Any]]] = {}
    for w in weaknesses:
        by_rec.setdefault(recommendation_id(w["SoftwareVendor"], w["SoftwareName"]), []).append(w)
    per_device: dict[str, list[Mapping[str, Any]]] = {}
    for w in weaknesses:
        per_device.setdefault(w["DeviceId"], []).append(w)
    out = []
    for rec_id, ws in by_rec.items():
        first = ws[0]
        devices = sorted({w["DeviceId"] for w in ws})
        without = dict(device_scores)
        for d in devices:
            without[d] = device_exposure([x for x in per_device[d]
                                          if recommendation_id(x["SoftwareVendor"], x["SoftwareName"]) != rec_id],
                                         exceptions)
        impact = organisation_exposure(device_scores) - organisation_exposure(without)
        fixes = [w["FixedVersion"] for w in ws if w["FixedVersion"]]
        cves = sorted({w["CveId"] for w in ws})
        kev = sorted({w["CveId"] for w in ws if w["IsKnownExploited"]})
        covered = [w for w in ws if excepted(rec_id, w["group_id"], exceptions)]
        target = _newest(first["Ecosystem"], fixes)
        rtype = "Update" if target else "Uninstall"
        name = first["SoftwareName"]
        label = (f"Update {name} to {target} or later" if target else f"Uninstall {name}: no security update yet")
        out.append({
            "id": rec_id, "productName": name, "recommendationName": label, "vendor": first["SoftwareVendor"],
            "recommendedVersion": target, "recommendedProgram": None, "recommendedVendor": None,
            "recommendationCategory": "Application", "subCategory": first["Ecosystem"],
            "severityScore": max((w["CvssScore"] or 0.0) for w in ws), "publicVulnerability": True,
            "activeAlert": False, "associatedThreats": [], "remediationType": rtype,
            "status": "Exception" if len(covered) == len(ws) else "Active",
            "configScoreImpact": 0.0, "exposureImpact": float(impact), "totalMachineCount": len(devices),
            "exposedMachinesCount": len({w["DeviceId"] for w in ws if w not in covered}),
            "nonProductivityImpactedAssets": 0, "relatedComponent": f"{first['Ecosystem']} {name}",
            "weaknesses": len(cves), "knownExploitedCount": len(kev), "cveIds": cves,
            "exposedMachineIds": devices,
            "summary": (f"{'upgrade' if target else 'remove'} {'source package ' if ':' in first['Ecosystem'] else ''}"
                        f"{name}{' to ≥ ' + target if target else ''} on {len(devices)} device"
                        f"{'' if len(devices) == 1 else 's'}: fixes {len(cves)} CVE{'' if len(cves) == 1 else 's'}"
                        f", {len(kev)} in KEV"),
        })
    out.sort(key=lambda r: (-r["exposureImpact"], -r["weaknesses"], r["id"]))
    return out


class _Rec:
    __slots__ = ("covered", "cves", "cvss", "devices", "ecosystem", "fixes", "kev", "name", "nonzero", "rows",
                 "uncovered", "vendor", "zeros")

    def __init__(self, vendor: str, name: str, ecosystem: str) -> None:
        self.vendor, self.name, self.ecosystem = vendor, name, ecosystem
        self.devices: set[str] = set()
        self.uncovered: set[str] = set()
        self.cves: set[str] = set()
        self.kev: set[str] = set()
        self.fixes: dict[str, None] = {}
        self.cvss = 0.0
        self.rows = self.covered = 0
        self.nonzero: dict[str, float] = {}  # device -> product of this software's non-zero factors there
        self.zeros: dict[str, int] = {}  # device -> how many of its factors are 0 (a risk of 100)


class Scoring:
    """Device exposure scores and recommendations folded from weakness rows one at a time (the service streams
    them from the store), holding per software only its sets and, per exposed device, one product: memory grows
    with (device, vulnerable software) pairs, not with weaknesses. The same results as `device_exposure` and
    `recommendations` over the rows as dicts (a device's score without one software is its product divided by that
    software's part, zeros counted apart)."""

    def __init__(self, exceptions: Sequence[Exception_] = ()) -> None:
        self.exceptions = exceptions
        self._excepted: dict[tuple[str, int], bool] = {}
        self._nonzero: dict[str, float] = {}
        self._zeros: dict[str, int] = {}
        self._recs: dict[str, _Rec] = {}

    def add(self, device_id: str, group_id: int, vendor: str, name: str, cve: str, risk: float,
            fixed: str | None, cvss: float | None, kev: bool, ecosystem: str) -> None:
        rid = recommendation_id(vendor, name)
        rec = self._recs.get(rid)
        if rec is None:
            rec = self._recs[rid] = _Rec(vendor, name, ecosystem)
        key = (rid, group_id)
        covered = self._excepted.get(key)
        if covered is None:
            covered = self._excepted[key] = excepted(rid, group_id, self.exceptions)
        rec.rows += 1
        rec.devices.add(device_id)
        rec.cves.add(cve)
        if kev:
            rec.kev.add(cve)
        if fixed:
            rec.fixes[fixed] = None
        rec.cvss = max(rec.cvss, cvss or 0.0)
        self._nonzero.setdefault(device_id, 1.0)
        self._zeros.setdefault(device_id, 0)
        if covered:
            rec.covered += 1
            return
        rec.uncovered.add(device_id)
        factor = (1 - min(max(risk, 0.0), 100.0) / 100) ** 0.5
        if factor == 0.0:
            self._zeros[device_id] += 1
            rec.zeros[device_id] = rec.zeros.get(device_id, 0) + 1
        else:
            self._nonzero[device_id] *= factor
            rec.nonzero[device_id] = rec.nonzero.get(device_id, 1.0) * factor

    @staticmethod
    def _score(nonzero: float, zeros: int) -> int:
        return round(100 * (1 - (0.0 if zeros else nonzero)))

    def scores(self, device_ids: Iterable[str] = ()) -> dict[str, int]:
        """Each device's exposure score; `device_ids` without weaknesses score 0."""
        out = dict.fromkeys(device_ids, 0)
        for d, p in self._nonzero.items():
            out[d] = self._score(p, self._zeros[d])
        return out

    def recommendations(self, device_scores: Mapping[str, int]) -> list[dict[str, Any]]:
        total, n = sum(device_scores.values()), len(device_scores)
        org = round(total / n) if n else 0
        out = []
        for rec_id, r in self._recs.items():
            drop = 0
            for d in r.devices:
                zeros = self._zeros[d] - r.zeros.get(d, 0)
                part = r.nonzero.get(d, 1.0)
                without = self._score(self._nonzero[d] / part if part else 1.0, zeros)
                drop += device_scores.get(d, 0) - without
            impact = org - (round((total - drop) / n) if n else 0)
            cves, kev = sorted(r.cves), sorted(r.kev)
            devices = sorted(r.devices)
            target = _newest(r.ecosystem, r.fixes)
            out.append(_recommendation(rec_id, r.name, r.vendor, r.ecosystem, target, r.cvss, impact, cves, kev,
                                       devices, len(r.uncovered), r.covered == r.rows))
        out.sort(key=lambda x: (-x["exposureImpact"], -x["weaknesses"], x["id"]))
        return out


def _recommendation(rec_id: str, name: str, vendor: str, ecosystem: str, target: str | None, cvss: float,
                    impact: int, cves: list[str], kev: list[str], devices: list[str], exposed: int,
                    all_covered: bool) -> dict[str, Any]:
    rtype = "Update" if target else "Uninstall"
    label = f"Update {name} to {target} or later" if target else f"Uninstall {name}: no security update yet"
    return {
        "id": rec_id, "productName": name, "recommendationName": label, "vendor": vendor,
        "recommendedVersion": target, "recommendedProgram": None, "recommendedVendor": None,
        "recommendationCategory": "Application", "subCategory": ecosystem,
        "severityScore": cvss, "publicVulnerability": True,
        "activeAlert": False, "associatedThreats": [], "remediationType": rtype,
        "status": "Exception" if all_covered else "Active",
        "configScoreImpact": 0.0, "exposureImpact": float(impact), "totalMachineCount": len(devices),
        "exposedMachinesCount": exposed,
        "nonProductivityImpactedAssets": 0, "relatedComponent": f"{ecosystem} {name}",
        "weaknesses": len(cves), "knownExploitedCount": len(kev), "cveIds": cves,
        "exposedMachineIds": devices,
        "summary": (f"{'upgrade' if target else 'remove'} {'source package ' if ':' in ecosystem else ''}"
                    f"{name}{' to ≥ ' + target if target else ''} on {len(devices)} device"
                    f"{'' if len(devices) == 1 else 's'}: fixes {len(cves)} CVE{'' if len(cves) == 1 else 's'}"
                    f", {len(kev)} in KEV"),
    }
