"""Indicators of compromise with Defender's types and actions, and the pure matching logic.

Rules: an indicator applies to a device when it has not expired and its ``rbac_group_ids`` is empty (every group)
or holds the device's group. Among the indicators that apply to one observation, Allowed wins over every other
action; otherwise the strongest action wins (BlockAndRemediate > Block > Warn > Audit).
"""

from __future__ import annotations

import contextlib
import enum
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit


class IndicatorType(enum.StrEnum):
    FILE_SHA1 = "FileSha1"
    FILE_SHA256 = "FileSha256"
    FILE_MD5 = "FileMd5"
    CERTIFICATE_THUMBPRINT = "CertificateThumbprint"
    IP_ADDRESS = "IpAddress"
    DOMAIN_NAME = "DomainName"
    URL = "Url"


class IndicatorAction(enum.StrEnum):
    ALLOWED = "Allowed"
    AUDIT = "Audit"
    WARN = "Warn"
    BLOCK = "Block"
    BLOCK_AND_REMEDIATE = "BlockAndRemediate"


_STRENGTH = {IndicatorAction.AUDIT: 1, IndicatorAction.WARN: 2, IndicatorAction.BLOCK: 3,
             IndicatorAction.BLOCK_AND_REMEDIATE: 4}
_HEX = {IndicatorType.FILE_SHA1: 40, IndicatorType.FILE_SHA256: 64, IndicatorType.FILE_MD5: 32,
        IndicatorType.CERTIFICATE_THUMBPRINT: 40}
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](-*[a-z0-9])*\.)+[a-z]{2,63}$")


def normalize(kind: IndicatorType, value: str) -> str:
    """The canonical form of ``value`` for ``kind`` (lower-case hex, compressed IP, lower-case domain); a
    ValueError naming what is wrong otherwise."""
    text = value.strip()
    if kind in _HEX:
        if not re.fullmatch(rf"[0-9a-fA-F]{{{_HEX[kind]}}}", text):
            raise ValueError(f"{kind.value} indicatorValue must be {_HEX[kind]} hex digits, not {value!r}")
        return text.lower()
    if kind is IndicatorType.IP_ADDRESS:
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            raise ValueError(f"IpAddress indicatorValue {value!r} is not an IPv4 or IPv6 address") from None
    if kind is IndicatorType.DOMAIN_NAME:
        domain = text.lower().rstrip(".")
        if not _DOMAIN.match(domain):
            raise ValueError(f"DomainName indicatorValue {value!r} is not a domain name")
        return domain
    parts = urlsplit(text if "://" in text else f"http://{text}")
    if not parts.hostname:
        raise ValueError(f"Url indicatorValue {value!r} has no host")
    return text.lower()


@dataclass(frozen=True)
class Indicator:
    indicator_value: str
    indicator_type: IndicatorType
    action: IndicatorAction
    title: str
    description: str = ""
    severity: str = "Informational"
    expiration_time: datetime | None = None
    rbac_group_ids: tuple[int, ...] = ()
    generate_alert: bool = False
    id: int | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    def applies(self, now: datetime, group_id: int | None) -> bool:
        if self.expiration_time is not None and self.expiration_time <= now:
            return False
        return not self.rbac_group_ids or (group_id is not None and group_id in self.rbac_group_ids)


@dataclass(frozen=True)
class Observation:
    """What one telemetry row offers to match: file hashes, an address, a host, a URL."""

    sha1: str = ""
    sha256: str = ""
    md5: str = ""
    certificate_thumbprint: str = ""
    ip: str = ""
    domain: str = ""
    url: str = ""


def _keys(ob: Observation) -> set[tuple[IndicatorType, str]]:
    keys: set[tuple[IndicatorType, str]] = set()
    for kind, value in ((IndicatorType.FILE_SHA1, ob.sha1), (IndicatorType.FILE_SHA256, ob.sha256),
                        (IndicatorType.FILE_MD5, ob.md5), (IndicatorType.CERTIFICATE_THUMBPRINT,
                                                           ob.certificate_thumbprint)):
        if value:
            keys.add((kind, value.lower()))
    if ob.ip:
        with contextlib.suppress(ValueError):
            keys.add((IndicatorType.IP_ADDRESS, str(ipaddress.ip_address(ob.ip))))
    host = ob.domain.lower().rstrip(".")
    if ob.url:
        keys.add((IndicatorType.URL, ob.url.lower()))
        host = host or (urlsplit(ob.url if "://" in ob.url else f"http://{ob.url}").hostname or "")
    while host and "." in host:  # a domain indicator covers its subdomains
        keys.add((IndicatorType.DOMAIN_NAME, host))
        host = host.split(".", 1)[1]
    return keys


@dataclass(frozen=True)
class Verdict:
    action: IndicatorAction
    indicator: Indicator
    matched: tuple[Indicator, ...]


class IndicatorSet:
    """Indicators indexed by (type, normalized value), for matching observations quickly."""

    def __init__(self, indicators: Iterable[Indicator]) -> None:
        self._by_key: dict[tuple[IndicatorType, str], list[Indicator]] = {}
        for ind in indicators:
            key = (ind.indicator_type, normalize(ind.indicator_type, ind.indicator_value))
            self._by_key.setdefault(key, []).append(ind)

    def verdict(self, ob: Observation, now: datetime, group_id: int | None) -> Verdict | None:
        """The winning action for ``ob`` on a device of ``group_id`` at ``now``; None when nothing applies."""
        matched = tuple(ind for key in _keys(ob) for ind in self._by_key.get(key, ()) if ind.applies(now, group_id))
        if not matched:
            return None
        allowed = [i for i in matched if i.action is IndicatorAction.ALLOWED]
        if allowed:
            return Verdict(IndicatorAction.ALLOWED, allowed[0], matched)
        best = max(matched, key=lambda i: _STRENGTH[i.action])
        return Verdict(best.action, best, matched)
