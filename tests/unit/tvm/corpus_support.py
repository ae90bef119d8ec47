"""A small raw feed corpus the tests write themselves, laid out like the real ones: the Debian tracker's lists,
PyPI OSV YAML per package, Go OSV JSON, AlmaLinux OSV JSON, an OSV zip export, CISA KEV and EPSS, plus files
that are not feeds (README, a JSON schema) and one broken record."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

DSA_LIST = """\
[12 Feb 2025] DSA-5900-1 openssl - security update
\t{CVE-2099-0001 CVE-2099-0002}
\t[bookworm] - openssl 3.0.15-1~deb12u1
[10 Jan 2025] DSA-5800-1 openssl - security update
\t{CVE-2099-0003}
\t[bookworm] - openssl 3.0.11-1~deb12u2
\t[bullseye] - openssl 1.1.1w-0+deb11u2
[09 Jan 2025] DSA-5799-1 curl - security update
\t{CVE-2099-0004}
\t[bookworm] - curl <not-affected> (vulnerable code not present)
"""

DLA_LIST = """\
[11 Feb 2025] DLA-4000-1 openssl - security update
\t{CVE-2099-0005}
\t[bullseye] - openssl 1.1.1w-0+deb11u3
"""

PYSEC_YAML = """\
id: PYSEC-2099-1
modified: 2024-10-01T00:00:00Z
aliases:
- CVE-2099-1000
affected:
- package:
    name: Demo_Lib
    ecosystem: PyPI
  ranges:
  - type: ECOSYSTEM
    events:
    - introduced: "0"
    - fixed: 2.0.0
"""

WITHDRAWN_YAML = """\
id: PYSEC-2099-2
modified: 2024-09-01T00:00:00Z
withdrawn: 2024-09-02T00:00:00Z
aliases:
- CVE-2099-1001
affected:
- package:
    name: demo-lib
    ecosystem: PyPI
  versions:
  - 1.0.0
"""

GO_RECORD = {
    "id": "GO-2099-0001",
    "modified": "0001-01-01T00:00:00Z",
    "aliases": ["CVE-2099-2000", "GHSA-xxxx-yyyy-zzzz"],
    "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
    "affected": [
        {
            "package": {"name": "example.com/mod", "ecosystem": "Go"},
            "ranges": [{"type": "SEMVER", "events": [{"introduced": "1.2.0"}, {"fixed": "1.4.1"}]}],
        }
    ],
}

ALMA_RECORD = {
    "id": "ALSA-2099:0001",
    "summary": "Important: bash security update",
    "modified": "2025-01-05T00:00:00Z",
    "related": ["CVE-2099-3000"],
    "affected": [
        {
            "package": {"name": "bash", "ecosystem": "AlmaLinux:9"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "5.1.8-9.el9"}]}],
        }
    ],
}

NPM_RECORD = {
    "id": "GHSA-npm1-0000-0000",
    "modified": "2025-01-06T00:00:00Z",
    "aliases": ["CVE-2099-4000"],
    "database_specific": {"severity": "MODERATE"},
    "affected": [
        {
            "package": {"name": "left-pad", "ecosystem": "npm"},
            "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.3.1"}]}],
        }
    ],
}

KEV = {
    "catalogVersion": "2025.01.01",
    "dateReleased": "2025-01-02T00:00:00.000Z",
    "vulnerabilities": [{"cveID": "CVE-2099-0001"}, {"cveID": "CVE-2099-2000"}],
}

EPSS_CSV = "#model_version:v2025.01.01,score_date:2025-01-03T00:00:00+0000\ncve,epss,percentile\n" \
    "CVE-2099-0001,0.91,0.99\nCVE-2099-0002,0.20,0.80\nCVE-2099-1000,0.05,0.40\n"


def write_corpus(root: Path) -> Path:
    """Write the corpus under `root` and return it."""
    (root / "debian-security-tracker" / "DSA").mkdir(parents=True)
    (root / "debian-security-tracker" / "DLA").mkdir(parents=True)
    (root / "debian-security-tracker" / "DSA" / "list").write_text(DSA_LIST)
    (root / "debian-security-tracker" / "DLA" / "list").write_text(DLA_LIST)
    (root / "debian-security-tracker" / "PROVENANCE.txt").write_text("where the lists came from\n")
    pypa = root / "pypa" / "vulns" / "demo-lib"
    pypa.mkdir(parents=True)
    (pypa / "PYSEC-2099-1.yaml").write_text(PYSEC_YAML)
    (pypa / "PYSEC-2099-2.yaml").write_text(WITHDRAWN_YAML)
    (pypa / "PYSEC-2099-9.yaml").write_text("id: [unclosed\n")  # broken: reported, not fatal
    go = root / "golang" / "data" / "osv"
    go.mkdir(parents=True)
    (go / "GO-2099-0001.json").write_text(json.dumps(GO_RECORD))
    (root / "golang" / "README.md").write_text("# not a feed\n")
    alma = root / "alma" / "advisories" / "almalinux9"
    alma.mkdir(parents=True)
    (alma / "ALSA-2099:0001.json").write_text(json.dumps(ALMA_RECORD))
    with zipfile.ZipFile(root / "npm-export.zip", "w") as z:  # an osv.dev-style zip export
        z.writestr("GHSA-npm1-0000-0000.json", json.dumps(NPM_RECORD))
    kev = root / "kev"
    kev.mkdir()
    (kev / "known_exploited_vulnerabilities.json").write_text(json.dumps(KEV))
    (kev / "known_exploited_vulnerabilities_schema.json").write_text(json.dumps({"$schema": "x", "title": "KEV"}))
    (root / "epss").mkdir()
    (root / "epss" / "epss_scores.csv").write_text(EPSS_CSV)
    return root


DPKG_STATUS = """\
Package: libssl3
Status: install ok installed
Source: openssl
Version: 3.0.11-1~deb12u1

Package: openssl
Status: install ok installed
Version: 3.0.11-1~deb12u1

Package: curl
Status: install ok installed
Version: 7.88.1-10+deb12u5

Package: bash
Status: install ok installed
Version: 5.2.15-2+b2
"""

REQUIREMENTS = "demo_lib==1.0.0\nrequests==2.32.3  # no advisory\n"

PACKAGE_LOCK = {
    "name": "app",
    "lockfileVersion": 3,
    "packages": {
        "": {"name": "app", "version": "1.0.0"},
        "node_modules/left-pad": {"version": "1.3.0"},
        "node_modules/other": {"version": "9.9.9"},
    },
}
