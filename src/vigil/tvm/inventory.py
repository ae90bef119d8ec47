"""Inventory readers: installed packages from dpkg's status file and pinned requirements, as `Package`s."""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable

from vigil.tvm.feeds import FeedError
from vigil.tvm.model import Package

_SOURCE = re.compile(r"^(\S+)(?:\s+\((\S+)\))?$")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*===?\s*([^\s;#]+)")


def read_dpkg_status(text: str, path: str, release: str) -> list[Package]:
    """Installed packages of a dpkg status file, each with its source package and version (for binNMUs these differ
    from the binary's); `release` is the Debian major version ("12"). A stanza without Package/Version raises."""
    packages: list[Package] = []
    for start, stanza in _stanzas(text):
        fields = dict(stanza)
        if "install ok installed" not in fields.get("Status", ""):
            continue
        if "Package" not in fields or "Version" not in fields:
            raise FeedError(path, start, "an installed package's stanza without Package or Version")
        src_name, src_version = fields["Package"], fields["Version"]
        if "Source" in fields:
            m = _SOURCE.match(fields["Source"].strip())
            if m is None:
                raise FeedError(path, start, f"unreadable Source field {fields['Source']!r}")
            src_name, src_version = m.group(1), m.group(2) or fields["Version"]
        packages.append(Package(f"Debian:{release}", fields["Package"], fields["Version"], src_name, src_version))
    return packages


def _stanzas(text: str) -> list[tuple[int, list[tuple[str, str]]]]:
    out: list[tuple[int, list[tuple[str, str]]]] = []
    current: list[tuple[str, str]] = []
    start = 1
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            if current:
                out.append((start, current))
            current = []
            continue
        if not current:
            start = n
        if line[0] in " \t":  # a continuation line of a multi-line field (Description, Conffiles)
            continue
        key, sep, value = line.partition(":")
        if sep:
            current.append((key, value.strip()))
    if current:
        out.append((start, current))
    return out


def read_requirements(text: str, path: str) -> list[Package]:
    """Pinned `name==version` lines of a requirements file; options, comments and blank lines are skipped, an
    unpinned requirement raises with its line (a version is needed to match)."""
    packages: list[Package] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        m = _PIN.match(line)
        if m is None:
            raise FeedError(path, n, f"not a pinned 'name==version' requirement: {line[:80]!r}")
        packages.append(Package("PyPI", m.group(1), m.group(2)))
    return packages


def read_package_lock(text: str, path: str) -> list[Package]:
    """npm's package-lock.json: lockfile v2/v3 `packages` ("node_modules/a/node_modules/b" keys) or v1's nested
    `dependencies`; the root project and linked (version-less) entries are skipped."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise FeedError(path, e.lineno, f"not JSON: {e.msg}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("packages", doc.get("dependencies")), dict):
        raise FeedError(path, None, "not an npm package-lock.json: no 'packages' or 'dependencies' object")
    found: dict[tuple[str, str], Package] = {}
    if isinstance(doc.get("packages"), dict):
        for key, entry in doc["packages"].items():
            if not key or not isinstance(entry, dict) or "node_modules/" not in key:
                continue
            name = entry.get("name") or key.rsplit("node_modules/", 1)[1]
            version = entry.get("version")
            if isinstance(version, str) and not entry.get("link"):
                found[(name, version)] = Package("npm", name, version)
    else:
        stack = [doc["dependencies"]]
        while stack:
            deps = stack.pop()
            for name, entry in deps.items():
                if isinstance(entry, dict) and isinstance(entry.get("version"), str):
                    found[(name, entry["version"])] = Package("npm", name, entry["version"])
                    if isinstance(entry.get("dependencies"), dict):
                        stack.append(entry["dependencies"])
    return sorted(found.values(), key=lambda p: (p.name, p.version))


def read_dist_metadata(text: str, path: str) -> Package:
    """A Python distribution's METADATA (dist-info) or PKG-INFO (egg-info): its Name and Version headers."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            break  # the headers end at the first blank line; the description follows
        key, sep, value = line.partition(":")
        if sep and key in ("Name", "Version") and key not in fields:
            fields[key] = value.strip()
    if "Name" not in fields or "Version" not in fields:
        raise FeedError(path, None, "distribution metadata without Name or Version")
    return Package("PyPI", fields["Name"], fields["Version"])


def read_npm_package_json(text: str, path: str) -> Package | None:
    """An installed npm package's package.json (under node_modules); None when it has no name or version."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise FeedError(path, e.lineno, f"not JSON: {e.msg}") from None
    if isinstance(doc, dict) and isinstance(doc.get("name"), str) and isinstance(doc.get("version"), str):
        return Package("npm", doc["name"], doc["version"])
    return None


def read_apk_installed(text: str, path: str, release: str) -> list[Package]:
    """Alpine's /lib/apk/db/installed: stanzas of `P:` name, `V:` version and `o:` origin (the source package,
    which Alpine's secdb names); `release` is "3.19"."""
    packages: list[Package] = []
    fields: dict[str, str] = {}
    start = 1
    for n, line in enumerate([*text.splitlines(), ""], 1):
        if not line.strip():
            if fields:
                if "P" not in fields or "V" not in fields:
                    raise FeedError(path, start, "an installed package's stanza without P: (name) or V: (version)")
                extra = {"arch": fields["A"]} if "A" in fields else {}
                packages.append(Package(f"Alpine:v{release}", fields["P"], fields["V"], fields.get("o", fields["P"]),
                                        fields["V"], extra))
            fields = {}
            continue
        if not fields:
            start = n
        key, sep, value = line.partition(":")
        if sep and len(key) == 1:
            fields.setdefault(key, value)
    return packages


# RPM header tags and types (rpm's rpmtag.h); a header is an index of (tag, type, offset, count) over a data store.
_RPM_NAME, _RPM_VERSION, _RPM_RELEASE, _RPM_EPOCH, _RPM_ARCH, _RPM_SOURCERPM = 1000, 1001, 1002, 1003, 1022, 1044
_RPM_INT32, _RPM_STRING = 4, 6
_RPM_HEADER_MAGIC = b"\x8e\xad\xe8\x01"
RPM_QUERY_FORMAT = "%{NAME}\\t%{EPOCHNUM}\\t%{VERSION}\\t%{RELEASE}\\t%{ARCH}\\t%{SOURCERPM}\\n"  # rpm -qa --qf


def rpm_ecosystem(os_id: str, version_id: str) -> str | None:
    """The OSV ecosystem of an RPM distribution from os-release's ID and VERSION_ID ("AlmaLinux:9"), or None for
    one whose advisories Vigil does not read."""
    family = {"almalinux": "AlmaLinux", "rocky": "Rocky Linux"}.get(os_id)
    major = version_id.split(".", 1)[0]
    return f"{family}:{major}" if family and major.isdigit() else None


def _rpm_package(ecosystem: str, name: str, epoch: int | None, version: str, release: str, arch: str,
                 source_rpm: str) -> Package | None:
    if name == "gpg-pubkey" or not arch or arch == "(none)":  # imported signing keys are headers too, not software
        return None
    # AlmaLinux's advisories name binary packages at epoch:version-release, the epoch only when it is not 0.
    evr = f"{epoch}:{version}-{release}" if epoch else f"{version}-{release}"
    extra = {"arch": arch}
    if source_rpm and source_rpm != "(none)":
        extra["sourcerpm"] = source_rpm
    return Package(ecosystem, name, evr, None, None, extra)


def read_rpm_header(blob: bytes, path: str, ecosystem: str) -> Package | None:
    """One package from an RPM header blob as rpm's SQLite database (`rpmdb.sqlite`, table Packages) stores it:
    index length and data length (big-endian), the index entries, the data. None for a signing-key header."""
    data = blob[8:] if blob[:4] == _RPM_HEADER_MAGIC else blob
    if len(data) < 8:
        raise FeedError(path, None, "an RPM header shorter than its own length fields")
    il, dl = struct.unpack_from(">II", data, 0)
    store_at = 8 + 16 * il
    if il > 100_000 or store_at + dl > len(data):
        raise FeedError(path, None, f"an RPM header whose {il} index entries and {dl} data bytes overrun its "
                                    f"{len(data)} bytes")
    store = data[store_at:store_at + dl]
    strings: dict[int, str] = {}
    epoch: int | None = None
    for i in range(il):
        tag, kind, offset, count = struct.unpack_from(">IIiI", data, 8 + 16 * i)
        if tag not in (_RPM_NAME, _RPM_VERSION, _RPM_RELEASE, _RPM_EPOCH, _RPM_ARCH, _RPM_SOURCERPM):
            continue
        if offset < 0 or offset >= dl:
            raise FeedError(path, None, f"RPM header tag {tag}: offset {offset} outside the {dl}-byte data")
        if tag == _RPM_EPOCH and kind == _RPM_INT32 and count >= 1 and offset + 4 <= dl:
            epoch, = struct.unpack_from(">i", store, offset)
        elif kind == _RPM_STRING:
            end = store.find(b"\0", offset)
            strings[tag] = store[offset:end if end >= 0 else dl].decode("utf-8", "replace")
    missing = [n for t, n in ((_RPM_NAME, "NAME"), (_RPM_VERSION, "VERSION"), (_RPM_RELEASE, "RELEASE"))
               if t not in strings]
    if missing:
        raise FeedError(path, None, f"an RPM header without {', '.join(missing)}")
    return _rpm_package(ecosystem, strings[_RPM_NAME], epoch, strings[_RPM_VERSION], strings[_RPM_RELEASE],
                        strings.get(_RPM_ARCH, ""), strings.get(_RPM_SOURCERPM, ""))


def read_rpm_query(text: str, path: str, ecosystem: str) -> list[Package]:
    """The output of `rpm -qa --qf RPM_QUERY_FORMAT` (for databases other than SQLite: Berkeley DB, ndb)."""
    packages: list[Package] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 6 or not parts[1].isdigit():
            raise FeedError(path, n, f"not a name/epoch/version/release/arch/source line: {line[:80]!r}")
        pkg = _rpm_package(ecosystem, parts[0], int(parts[1]), parts[2], parts[3], parts[4], parts[5])
        if pkg is not None:
            packages.append(pkg)
    return packages


_GO_MAGIC = b"\xff Go buildinf:"
_ELF_MAGIC = b"\x7fELF"


class GoBuildInfo:
    """What `go version -m` shows: the toolchain version and the module lines."""

    def __init__(self, go_version: str, modinfo: str) -> None:
        self.go_version = go_version
        self.modinfo = modinfo

    def packages(self) -> list[Package]:
        """The main module (unless a development build), its dependencies (replacements applied) and the Go
        standard library (OSV's `stdlib`, version without the "go" prefix)."""
        out: list[Package] = []
        for line in self.modinfo.splitlines():
            parts = line.split("\t")
            if parts[0] in ("mod", "dep") and len(parts) >= 3 and parts[2] != "(devel)":
                out.append(Package("Go", parts[1], parts[2]))
            elif parts[0] == "=>" and len(parts) >= 3 and out:
                out[-1] = Package("Go", parts[1], parts[2])  # the dependency above is replaced by this module
        v = self.go_version.removeprefix("go").split()[0] if self.go_version.startswith("go") else ""
        if v and v[0].isdigit():
            out.append(Package("Go", "stdlib", v))
        return out


def _uvarint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(data):
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
    raise ValueError("truncated varint")


def go_buildinfo_section(head: bytes, read_at: Callable[[int, int], bytes]) -> bytes | None:
    """The `.go.buildinfo` section of an ELF file (`head`: its first 64 bytes; `read_at(offset, size)` reads the
    rest), or None when it is not an ELF file or has no such section (not a Go binary)."""
    if len(head) < 64 or head[:4] != _ELF_MAGIC or head[4] not in (1, 2) or head[5] not in (1, 2):
        return None
    wide, end = head[4] == 2, "<" if head[5] == 1 else ">"
    if wide:
        shoff, = struct.unpack_from(end + "Q", head, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", head, 0x3A)
    else:
        shoff, = struct.unpack_from(end + "I", head, 0x20)
        shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", head, 0x2E)
    if not shoff or not shnum or shstrndx >= shnum or shentsize < (64 if wide else 40) or shnum > 4096:
        return None
    table = read_at(shoff, shentsize * shnum)
    if len(table) < shentsize * shnum:
        return None

    def section(i: int) -> tuple[int, int, int]:  # name offset, file offset, size
        base = i * shentsize
        if wide:
            name, = struct.unpack_from(end + "I", table, base)
            off, size = struct.unpack_from(end + "QQ", table, base + 0x18)
        else:
            name, = struct.unpack_from(end + "I", table, base)
            off, size = struct.unpack_from(end + "II", table, base + 0x10)
        return name, off, size

    _, str_off, str_size = section(shstrndx)
    names = read_at(str_off, min(str_size, 1 << 16))
    for i in range(shnum):
        name_at, off, size = section(i)
        if names[name_at:name_at + 14] == b".go.buildinfo\x00":
            return read_at(off, min(size, 1 << 20))
    return None


def read_go_buildinfo(section: bytes, path: str) -> GoBuildInfo:
    """Go 1.18+'s inline build info (version and module lines as varint-prefixed strings after a 32-byte
    header); older binaries point into their data instead, which is reported, not guessed."""
    if not section.startswith(_GO_MAGIC):
        raise FeedError(path, None, "a .go.buildinfo section without Go's build-info magic")
    if len(section) < 32 or not section[15] & 0x2:
        raise FeedError(path, None, "a Go binary built before Go 1.18: its build info is not read")
    try:
        n, pos = _uvarint(section, 32)
        version = section[pos:pos + n].decode("utf-8", "replace")
        n, pos = _uvarint(section, pos + n)
        mod = section[pos:pos + n]
    except ValueError:
        raise FeedError(path, None, "truncated Go build info") from None
    if len(mod) >= 33 and mod[-17:-16] == b"\n":  # the module text sits between two 16-byte sentinels
        mod = mod[16:-16]
    return GoBuildInfo(version, mod.decode("utf-8", "replace"))


_DEB_KERNEL = re.compile(r"\bDebian (\d[^\s)]*)")


def running_kernel(release: str, version: str, distro: str | None) -> Package:
    """The running kernel (`uname -r`, `uname -v`). On Debian `uname -v` names the `linux` source package's
    version the kernel was built from, which is what Debian's advisories fix: the running kernel can be
    vulnerable while a fixed linux-image package waits for a reboot. `distro` is "Debian:12" or None."""
    extra = {"kernel": "running"}
    m = _DEB_KERNEL.search(version)
    if distro and distro.startswith("Debian:") and m:
        return Package(distro, "linux", release, "linux", m.group(1), extra)
    return Package(distro or "Linux", "linux", release, None, None, extra)
