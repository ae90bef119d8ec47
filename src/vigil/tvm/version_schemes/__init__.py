"""Version schemes per ecosystem: one registry, each ecosystem's own ordering rules (duplicates raise)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
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
            return Ordered(self.parse_raw, version, _parse(self.parse_raw, version))
        except Exception as e:  # univers raises several types (ValueError, InvalidVersion, TypeError)
            raise InvalidVersion(f"{self.name}: not a valid version: {version!r} ({e})") from e


@lru_cache(maxsize=200_000)
def _parse(parse_raw: Callable[[str], Any], version: str) -> Any:
    """Parsed versions are immutable and the same strings recur across devices and advisories: parse each once."""
    return parse_raw(version)


@lru_cache(maxsize=1_000_000)
def _compare(parse_raw: Callable[[str], Any], a: str, b: str) -> int:
    x, y = _parse(parse_raw, a), _parse(parse_raw, b)
    return -1 if x < y else 1 if x > y else 0


class Ordered:
    """A parsed version ordered by its scheme. univers compares RPM and dpkg versions by re-tokenising both
    strings on every comparison; a fleet shares most versions, so each pair's result is remembered."""

    __slots__ = ("_parse_raw", "raw", "value")

    def __init__(self, parse_raw: Callable[[str], Any], raw: str, value: Any) -> None:
        self._parse_raw, self.raw, self.value = parse_raw, raw, value

    def _cmp(self, other: object) -> int:
        if not isinstance(other, Ordered) or other._parse_raw is not self._parse_raw:
            raise TypeError(f"cannot compare {self!r} with {other!r}")
        return 0 if self.raw == other.raw else _compare(self._parse_raw, self.raw, other.raw)

    def __lt__(self, other: object) -> bool:
        return self._cmp(other) < 0

    def __le__(self, other: object) -> bool:
        return self._cmp(other) <= 0

    def __gt__(self, other: object) -> bool:
        return self._cmp(other) > 0

    def __ge__(self, other: object) -> bool:
        return self._cmp(other) >= 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ordered) and other._parse_raw is self._parse_raw and self._cmp(other) == 0

    def __hash__(self) -> int:  # equal versions may be spelt differently ("1.0" == "1.0.0"): one bucket per scheme
        return hash(self._parse_raw)

    def __repr__(self) -> str:
        return f"Ordered({self.raw!r})"


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
