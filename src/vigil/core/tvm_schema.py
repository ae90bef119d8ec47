"""The vulnerability-management tables advanced hunting reads, with Defender's names and columns.

Unlike the telemetry tables these hold the current state, kept by the server: a device's installed software
(from the agent's SoftwareInventory rows), the weaknesses found in it, and its secure configuration assessment
(from its SecureConfigurationAssessment rows). The columns after Defender's own are Vigil's.
"""

from __future__ import annotations

from collections.abc import Mapping

from vigil.core.telemetry import TABLES, Column, ColumnType, Table

S, B, T, D, R = ColumnType.STRING, ColumnType.BOOL, ColumnType.DATETIME, ColumnType.DYNAMIC, ColumnType.REAL

_DEVICE = (
    Column("DeviceId", S, "Vigil device id.", required=True, indexed=True, max_length=40),
    Column("DeviceName", S, "Fully qualified host name of the device.", max_length=255),
    Column("OSPlatform", S, "Linux, Windows, macOS.", max_length=32),
    Column("OSVersion", S, "Distribution version, e.g. 12.", max_length=128),
    Column("OSArchitecture", S, "Processor architecture, e.g. x86_64.", max_length=32),
)
_SOFTWARE = (
    Column("SoftwareVendor", S, "Who ships the package: the distribution (debian, almalinux, alpine) or the"
           " language registry (pypi, npm, golang).", max_length=128),
    Column("SoftwareName", S, "Package name (for the weaknesses of Debian packages: the source package).",
           max_length=512),
    Column("SoftwareVersion", S, "Installed version.", max_length=256),
)

DEVICE_TVM_SOFTWARE_INVENTORY = Table(
    "DeviceTvmSoftwareInventory",
    "The software installed on each device, as its agent last reported it.",
    (
        *_DEVICE,
        *_SOFTWARE,
        Column("EndOfSupportStatus", S, "End-of-support state of the version, when known (not filled yet)."),
        Column("EndOfSupportDate", T, "End-of-support date of the version, when known (not filled yet)."),
        Column("ProductCodeCpe", S, "CPE of the product, when known (not filled yet)."),
        Column("SoftwarePurl", S, "The package URL the agent reported (pkg:deb/debian/libssl3@...).", required=True,
               max_length=2048),
        Column("Ecosystem", S, "The OSV ecosystem it is matched in: Debian:12, AlmaLinux:9, PyPI, npm, Go.",
               max_length=64),
        Column("SourcePackageName", S, "Distribution packages: the source package advisories name.", max_length=512),
        Column("SourcePackageVersion", S, "Distribution packages: the source package's version.", max_length=256),
        Column("FirstSeenTimestamp", T, "When the server first saw this package version on the device."),
    ),
)

DEVICE_TVM_SOFTWARE_VULNERABILITIES = Table(
    "DeviceTvmSoftwareVulnerabilities",
    "Weaknesses of the installed software: one row per device, package and CVE (or advisory without a CVE).",
    (
        *_DEVICE,
        *_SOFTWARE,
        Column("CveId", S, "The CVE, or the advisory id when it names none.", required=True, max_length=128),
        Column("VulnerabilitySeverityLevel", S, "Critical, High, Medium, Low (from CVSS, else the vendor's).",
               max_length=16),
        Column("RecommendedSecurityUpdate", S, "What fixes it: 'Upgrade <package> to <version>' (or none yet)."),
        Column("RecommendedSecurityUpdateId", S, "The advisory that brings the fix (DSA-5532-1, GHSA-...).",
               max_length=128),
        Column("CveTags", D, "Tags of the CVE: ExploitedInTheWild (CISA KEV), NoSecurityUpdate."),
        Column("CveMitigationStatus", S, "Exception status when an exception covers it (e.g. 'Exception:"
               " AcceptRisk'), else empty."),
        Column("SoftwarePurl", S, "The package URL of the installed package.", required=True, max_length=2048),
        Column("Ecosystem", S, "The OSV ecosystem it was matched in.", max_length=64),
        Column("AdvisoryIds", D, "Every advisory that reaches this CVE on this package (JSON array)."),
        Column("FixedVersion", S, "The first fixed version, null when there is none yet.", max_length=256),
        Column("MatchReason", S, "Why it matched: package, installed version, affected range or fixed version."),
        Column("CvssScore", R, "CVSS base score (0-10), when an advisory gives a vector or score."),
        Column("EpssScore", R, "EPSS probability (0-1), when known."),
        Column("IsKnownExploited", B, "In CISA's Known Exploited Vulnerabilities catalogue."),
        Column("RiskScore", R, "The weakness's risk on this device, 0-100 (docs/vulnerability-management.md)."),
        Column("FirstSeenTimestamp", T, "When the server first found this weakness on the device."),
    ),
)

DEVICE_TVM_SECURE_CONFIGURATION_ASSESSMENT = Table(
    "DeviceTvmSecureConfigurationAssessment",
    "The secure configuration checks each device's agent last ran: one row per device and ConfigurationId.",
    (
        Column("DeviceId", S, "Vigil device id.", required=True, indexed=True, max_length=40),
        Column("DeviceName", S, "Fully qualified host name of the device.", max_length=255),
        Column("OSPlatform", S, "Linux, Windows, macOS.", max_length=32),
        Column("Timestamp", T, "When the agent ran the check."),
        Column("ConfigurationId", S, "The check's stable id (scid-vgl-NNNN).", required=True, max_length=64),
        Column("ConfigurationCategory", S, "Accounts, Network, OS, Security controls, Application.", max_length=64),
        Column("ConfigurationSubcategory", S, "What the check is about: SSH, sysctl, Firewall, Mount options, ...",
               max_length=64),
        Column("ConfigurationImpact", R, "The check's weight in the secure score, 1-10."),
        Column("IsCompliant", B, "The setting is as the check wants it."),
        Column("IsApplicable", B, "The check applies to the device (its subject, e.g. sshd, is present)."),
        Column("Context", D, "What the check read on the device: the evidence (JSON array of text)."),
        Column("IsExpectedUserImpact", B, "Applying the fix may change what users or services can do."),
        Column("ConfigurationName", S, "The check's name.", max_length=256),
        Column("RemediationOptions", S, "How to fix it."),
    ),
)

TVM_TABLES: Mapping[str, Table] = {t.name: t for t in (DEVICE_TVM_SOFTWARE_INVENTORY,
                                                          DEVICE_TVM_SOFTWARE_VULNERABILITIES,
                                                          DEVICE_TVM_SECURE_CONFIGURATION_ASSESSMENT)}
# What advanced hunting reads: the telemetry and the state tables, every one scoped by its DeviceId.
HUNTING_TABLES: Mapping[str, Table] = {**TABLES, **TVM_TABLES}
