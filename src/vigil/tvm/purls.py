"""Inventory packages as package URLs (purl), the form the agent reports and the server stores.

The OSV ecosystem and, for distro packages, the source package travel in the purl's qualifiers as Syft and
Trivy write them: ``distro=debian-12`` and ``upstream=openssl@3.0.11-1~deb12u2`` (the version only when it
differs from the binary's), so a purl alone is enough to match a package the way the scanner does.
"""

from __future__ import annotations

import json
from typing import Any

from packageurl import PackageURL

from vigil.tvm.model import Package

# OSV ecosystem (without the release) -> (purl type, namespace, distro qualifier prefix)
_DISTROS = {"Debian": ("deb", "debian", "debian"), "AlmaLinux": ("rpm", "almalinux", "almalinux"),
            "Alpine": ("apk", "alpine", "alpine"), "Rocky Linux": ("rpm", "rocky", "rocky")}
_LANGS = {"PyPI": "pypi", "npm": "npm", "Go": "golang"}
_BY_TYPE = {v: k for k, v in _LANGS.items()}
KERNEL_NAME = "linux"  # the running kernel, a generic purl whose `upstream` names the distro's source package


class PurlError(ValueError):
    pass


def to_purl(p: Package) -> str:
    family, _, release = p.ecosystem.partition(":")
    if p.extra.get("kernel") == "running":
        quals = {"distro": f"{_DISTROS[family][2]}-{release}"} if family in _DISTROS and release else {}
        if p.source_name:
            quals["upstream"] = f"{p.source_name}@{p.source_version}" if p.source_version else p.source_name
        return PackageURL(type="generic", name=KERNEL_NAME, version=p.version, qualifiers=quals).to_string()
    if family in _DISTROS:
        ptype, ns, distro = _DISTROS[family]
        quals = {"distro": f"{distro}-{release}"} if release else {}
        if p.extra.get("arch"):
            quals["arch"] = p.extra["arch"]
        if p.source_name and (p.source_name != p.name or (p.source_version or p.version) != p.version):
            quals["upstream"] = (p.source_name if (p.source_version or p.version) == p.version
                                 else f"{p.source_name}@{p.source_version}")
        return PackageURL(type=ptype, namespace=ns, name=p.name, version=p.version, qualifiers=quals).to_string()
    if p.ecosystem in _LANGS:
        ns, _, name = p.name.rpartition("/")
        return PackageURL(type=_LANGS[p.ecosystem], namespace=ns or None, name=name, version=p.version).to_string()
    raise PurlError(f"no package URL type for ecosystem {p.ecosystem!r}")


def from_purl(text: str) -> Package:
    """The package a purl names, its ecosystem as OSV spells it; raises PurlError naming what is wrong."""
    try:
        u = PackageURL.from_string(text)
    except ValueError as e:
        raise PurlError(f"not a package URL {text[:120]!r}: {e}") from None
    if not u.version:
        raise PurlError(f"package URL {text[:120]!r} has no version")
    quals = u.qualifiers if isinstance(u.qualifiers, dict) else {}
    distro = quals.get("distro", "")
    src_name: str | None = None
    src_version: str | None = None
    if "upstream" in quals:
        src_name, _, v = quals["upstream"].partition("@")
        src_version = v or u.version
    extra = {"arch": quals["arch"]} if "arch" in quals else {}
    if u.type == "generic" and u.name == KERNEL_NAME:
        family = next((f for f, d in _DISTROS.items() if distro.startswith(d[2] + "-")), None)
        eco = f"{family}:{distro.split('-', 1)[1]}" if family else "Linux"
        return Package(eco, KERNEL_NAME, u.version, src_name, src_version, {"kernel": "running"})
    for family, (ptype, ns, prefix) in _DISTROS.items():
        if u.type == ptype and (u.namespace or "").lower() == ns:
            if not distro.startswith(prefix + "-"):
                raise PurlError(f"package URL {text[:120]!r} has no distro={prefix}-<release> qualifier")
            release = distro.split("-", 1)[1]
            if family == "Debian":
                release = release.split(".", 1)[0]
            return Package(f"{family}:{release}", u.name, u.version, src_name or u.name,
                           src_version or u.version, extra)
    if u.type in _BY_TYPE:
        name = f"{u.namespace}/{u.name}" if u.namespace else u.name
        return Package(_BY_TYPE[u.type], name, u.version)
    raise PurlError(f"package URL type {u.type!r} of {text[:120]!r} is not one Vigil matches")


INVENTORY_ACTION = "SoftwareInventory"  # the DeviceEvents action type of the agent's inventory rows
PART_CHARS = 60_000  # under the 64 KiB a row's dynamic value may hold as JSON


def inventory_parts(series: str, generation: int, base: int | None, added: list[str],
                    removed: list[str]) -> list[dict[str, Any]]:
    """One inventory (full when ``base`` is None, else a diff on generation ``base``) as AdditionalFields values
    small enough for one row each; every part carries the header, Part counts from 1."""
    chunks: list[tuple[list[str], list[str]]] = [([], [])]
    size = 0
    for key, items in ((0, added), (1, removed)):
        for purl in items:
            cost = len(json.dumps(purl)) + 2  # the separator, as json.dumps spells it
            if size + cost > PART_CHARS and (chunks[-1][0] or chunks[-1][1]):
                chunks.append(([], []))
                size = 0
            chunks[-1][key].append(purl)
            size += cost
    return [{"Series": series, "Generation": generation, "Base": base, "Full": base is None, "Part": i,
             "Parts": len(chunks), "Added": a, "Removed": r} for i, (a, r) in enumerate(chunks, 1)]
