"""Indicators of compromise with Defender's types and actions, and the pure matching logic.

Rules: an indicator applies to a device when it has not expired and its ``rbac_group_ids`` is empty (every group)
or holds the device's group. Among the indicators that apply to one observation, Allowed wins over every other
action; otherwise the strongest action wins (BlockAndRemediate > Block > Warn > Audit).
"""

from __future__ import annotations

import contextlib
import csv
import enum
import io
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
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


# Defender's indicator import template, in its column order.
CSV_COLUMNS = ("IndicatorType", "IndicatorValue", "ExpirationTime", "Action", "Severity", "Title", "Description",
               "RecommendedActions", "RbacGroups", "Category", "MitreTechniques", "GenerateAlert")
SEVERITIES = ("Informational", "Low", "Medium", "High")


def to_csv(indicators: Iterable[Indicator]) -> str:
    """Indicators as Defender's template CSV (RbacGroups: device-group ids joined by ``;``)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for i in indicators:
        w.writerow([i.indicator_type.value, i.indicator_value,
                    i.expiration_time.isoformat().replace("+00:00", "Z") if i.expiration_time else "",
                    i.action.value, i.severity, i.title, i.description, i.extra.get("RecommendedActions", ""),
                    ";".join(str(g) for g in i.rbac_group_ids), i.extra.get("Category", ""),
                    i.extra.get("MitreTechniques", ""), "TRUE" if i.generate_alert else "FALSE"])
    return out.getvalue()


def from_csv(text: str) -> list[Indicator]:
    """Indicators from Defender's template CSV; a ValueError naming the line and the field otherwise."""
    result = []
    for item in parse_csv(text):
        if isinstance(item, ValueError):
            raise item
        result.append(item)
    return result


def parse_csv(text: str) -> list[Indicator | ValueError]:
    """Each line of Defender's template CSV as an indicator or the error naming its line and field, so a batch can
    keep its good lines; a ValueError only when the header lacks a required column."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in ("IndicatorType", "IndicatorValue", "Action", "Title") if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"the CSV lacks the column(s) {', '.join(missing)}; expected {', '.join(CSV_COLUMNS)}")
    result: list[Indicator | ValueError] = []
    for row in reader:
        try:
            result.append(_from_row(row))
        except ValueError as e:
            result.append(ValueError(f"line {reader.line_num}: {e}"))
    return result


def _from_row(row: dict[str, str]) -> Indicator:
    def get(name: str) -> str:
        return (row.get(name) or "").strip()

    try:
        kind = IndicatorType(get("IndicatorType"))
    except ValueError:
        raise ValueError(f"IndicatorType {get('IndicatorType')!r} is not one of "
                         f"{', '.join(t.value for t in IndicatorType)}") from None
    legacy = {"Alert": IndicatorAction.AUDIT, "AlertAndBlock": IndicatorAction.BLOCK}.get(get("Action"))
    try:
        action = legacy or IndicatorAction(get("Action"))
    except ValueError:
        known = ", ".join(a.value for a in IndicatorAction)
        raise ValueError(f"Action {get('Action')!r} is not one of {known} (or the legacy Alert, AlertAndBlock)"
                         ) from None
    severity = get("Severity") or "Informational"
    if severity not in SEVERITIES:
        raise ValueError(f"Severity {severity!r} is not one of {', '.join(SEVERITIES)}")
    if not get("Title"):
        raise ValueError("Title is empty")
    expiry = None
    if get("ExpirationTime"):
        try:
            expiry = datetime.fromisoformat(get("ExpirationTime").replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"ExpirationTime {get('ExpirationTime')!r} is not an ISO 8601 time") from None
        if expiry.tzinfo is None:
            expiry = expiry.replace(tzinfo=UTC)
    groups_text = get("RbacGroups")
    try:
        groups = tuple(int(g) for g in groups_text.split(";") if g.strip())
    except ValueError:
        raise ValueError(f"RbacGroups {groups_text!r} must be device-group ids separated by ';'") from None
    alert = get("GenerateAlert").lower() or ("true" if legacy else "")
    if alert not in ("", "true", "false"):
        raise ValueError(f"GenerateAlert {get('GenerateAlert')!r} must be TRUE or FALSE")
    value = normalize(kind, get("IndicatorValue"))
    extra = {k: get(k) for k in ("RecommendedActions", "Category", "MitreTechniques") if get(k)}
    return Indicator(value, kind, action, get("Title"), get("Description"), severity, expiry, groups,
                     alert == "true", extra=extra)
