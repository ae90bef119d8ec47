"""Version schemes per ecosystem: one registry, each ecosystem's own ordering rules (duplicates raise)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from univers.versions import DebianVersion, GolangVersion, PypiVersion, RpmVersion, SemverVersion


class UnknownEcosystem(LookupError):
    """An ecosystem no version scheme is registered for."""


class InvalidVersion(ValueError):
    """A version string the ecosystem's scheme cannot parse; names the scheme and the string."""


@dataclass(frozen=True, slots=True)
class VersionScheme:
    """Parses a version into an object ordered by the ecosystem's rules."""

    name: str
    parse_raw: Callable[[str], Any]

    def parse(self, version: str) -> Any:
        try:
            return self.parse_raw(version)
        except Exception as e:  # univers raises several types (ValueError, InvalidVersion, TypeError)
            raise InvalidVersion(f"{self.name}: not a valid version: {version!r} ({e})") from e


_SCHEMES: dict[str, VersionScheme] = {}


def register(ecosystem: str, scheme: VersionScheme) -> None:
    if ecosystem in _SCHEMES:
        raise ValueError(f"version scheme for {ecosystem!r} registered twice")
    _SCHEMES[ecosystem] = scheme


def scheme_for(ecosystem: str) -> VersionScheme:
    """The scheme of an OSV ecosystem; a release suffix ("Debian:12", "AlmaLinux:9") does not change the rules."""
    base = ecosystem.split(":", 1)[0]
    try:
        return _SCHEMES[base]
    except KeyError:
        raise UnknownEcosystem(f"no version scheme for ecosystem {ecosystem!r}") from None


def _go(version: str) -> Any:
    # Go module versions are semver with a "v" prefix; OSV's Go ranges drop it, inventories keep it.
    return GolangVersion(version if version.startswith("v") else "v" + version)


DPKG = VersionScheme("dpkg", DebianVersion)
RPM = VersionScheme("rpm", RpmVersion)
PEP440 = VersionScheme("pep440", PypiVersion)
SEMVER = VersionScheme("semver", SemverVersion)
GO = VersionScheme("go-semver", _go)

register("Debian", DPKG)
register("Ubuntu", DPKG)
register("AlmaLinux", RPM)
register("Rocky Linux", RPM)
register("Red Hat", RPM)
register("PyPI", PEP440)
register("npm", SEMVER)
register("Go", GO)
