"""Field and log-source mappings, loaded from YAML data: which events a rule sees and under what names."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from vigil.core.telemetry import TABLES
from vigil.detect.model import LogSource

WINDOWS = "windows"
TELEMETRY = "telemetry"
ANY = "*"  # an index key part that matches every value


class MappingError(Exception):
    """A mapping file is malformed; names the file and the entry."""


@dataclass(frozen=True)
class Binding:
    """One place a rule runs: an index key (domain, channel|table, event id|action type) and field names."""

    domain: str
    key: tuple[str, str]
    fields: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Entry:
    keys: tuple[tuple[str, str], ...]
    fields: Mapping[str, str]
    provides: frozenset[str] | None
    table: str | None  # telemetry entries: the table whose columns are valid identity fields


@dataclass(frozen=True)
class SourceMapping:
    """A domain's mapping: Sigma (product, category, service) -> bindings."""

    domain: str
    product: str
    categories: Mapping[str, tuple[_Entry, ...]]
    services: Mapping[str, tuple[_Entry, ...]]
    origin: str

    def bind(self, logsource: LogSource, rule_fields: Iterable[str]) -> tuple[list[Binding], str | None]:
        """Bindings of a rule in this domain, or none and the reason why."""
        if logsource.product and logsource.product.lower() != self.product:
            return [], f"product {logsource.product!r} is not {self.product!r}"
        entries: tuple[_Entry, ...]
        if logsource.category:
            entries = self.categories.get(logsource.category.lower(), ())
            if not entries:
                return [], f"no {self.domain} source for category {logsource.category!r}"
            if logsource.service:
                wanted = {k[0] for e in self.services.get(logsource.service.lower(), ()) for k in e.keys}
                entries = tuple(e for e in entries if any(k[0] in wanted for k in e.keys)) or entries
        elif logsource.service:
            entries = self.services.get(logsource.service.lower(), ())
            if not entries:
                return [], f"no {self.domain} source for service {logsource.service!r}"
        elif logsource.product:
            entries = (_Entry(((ANY, ANY),), {}, None, None),)
        else:
            return [], "log source names no product, category or service"
        used = set(rule_fields)
        bindings: list[Binding] = []
        reasons: list[str] = []
        for entry in entries:
            if entry.provides is not None and not used <= entry.provides:
                reasons.append(f"fields {sorted(used - entry.provides)} not in {entry.keys[0][0]}")
                continue
            if entry.table is not None:
                columns = TABLES[entry.table].column_names
                missing = sorted(f for f in used if f not in entry.fields and f not in columns)
                if missing:
                    reasons.append(f"field(s) {', '.join(missing)} have no column in {entry.table}")
                    continue
            bindings.extend(Binding(self.domain, key, entry.fields) for key in entry.keys)
        if not bindings:
            return [], "; ".join(reasons) or f"no {self.domain} source"
        return bindings, None


def _entries(raw: Any, domain: str, origin: str, where: str) -> tuple[_Entry, ...]:
    if not isinstance(raw, list):
        raise MappingError(f"{origin}: {where}: expected a list of sources")
    out = []
    for item in raw:
        if not isinstance(item, dict):
            raise MappingError(f"{origin}: {where}: expected a mapping, got {item!r}")
        fields = {str(k): str(v) for k, v in (item.get("fields") or {}).items()}
        provides = item.get("provides")
        if domain == WINDOWS:
            if "channel" not in item:
                raise MappingError(f"{origin}: {where}: a Windows source needs a channel")
            channel = str(item["channel"]).lower()
            ids = [str(i) for i in item.get("event_ids") or [ANY]]
            keys = tuple((channel, i) for i in ids)
            table = None
        else:
            table = str(item.get("table", ""))
            if table not in TABLES:
                raise MappingError(f"{origin}: {where}: unknown telemetry table {table!r}")
            actions = [str(a) for a in item.get("action_types") or [ANY]]
            for a in actions:
                if a != ANY and a not in TABLES[table].action_types:
                    raise MappingError(f"{origin}: {where}: {table} has no action type {a!r}")
            for target in fields.values():
                if target not in TABLES[table].column_names:
                    raise MappingError(f"{origin}: {where}: {table} has no column {target!r}")
            keys = tuple((table.lower(), a) for a in actions)  # matched case-insensitively, like channels
        out.append(_Entry(keys, fields, frozenset(provides) if provides is not None else None, table))
    return tuple(out)


def parse_mapping(text: str, origin: str) -> SourceMapping:
    import yaml  # only when rules are compiled: a warm start reads no mapping

    data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader, C when built
    if not isinstance(data, dict) or data.get("domain") not in (WINDOWS, TELEMETRY):
        raise MappingError(f"{origin}: expected a mapping with domain: windows|telemetry")
    domain = str(data["domain"])
    return SourceMapping(
        domain=domain,
        product=str(data.get("product", "")).lower(),
        categories={str(k).lower(): _entries(v, domain, origin, f"category {k}")
                    for k, v in (data.get("categories") or {}).items()},
        services={str(k).lower(): _entries(v, domain, origin, f"service {k}")
                  for k, v in (data.get("services") or {}).items()},
        origin=origin,
    )


def load_mapping(path: Path) -> SourceMapping:
    return parse_mapping(path.read_text(encoding="utf-8"), str(path))


def default_mappings() -> tuple[SourceMapping, ...]:
    """The mappings shipped with Vigil: raw Windows events, and Linux rules on Vigil telemetry."""
    base = resources.files("vigil.detect") / "mappings"
    return tuple(
        parse_mapping((base / name).read_text(encoding="utf-8"), f"vigil/detect/mappings/{name}")
        for name in ("windows.yml", "linux_telemetry.yml")
    )
