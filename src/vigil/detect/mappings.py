"""Field and log-source mappings, loaded from YAML data: which events a rule sees and under what names."""

from __future__ import annotations

import re
from collections.abc import Mapping
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


_ARG = re.compile(r"a(0|[1-9][0-9]{0,2})")  # auditd EXECVE's a0, a1, ... (argv elements)

# Derivations a source may declare (`derived: {kind: column}`): the Sigma fields each gives, computed per event
# from the column's shell-quoted words (the agent joins argv so that it splits back exactly).
DERIVATIONS = {
    "argv": "a0, a1, ... (argv elements) and argc",
    "comm": "comm: the kernel's task name, argv[0]'s base name cut to 15 characters",
}


def derivation_of(sigma_field: str) -> str | None:
    """The derivation that gives `sigma_field`, if any."""
    if sigma_field == "argc" or _ARG.fullmatch(sigma_field):
        return "argv"
    return "comm" if sigma_field == "comm" else None


@dataclass(frozen=True)
class EventSource:
    """One kind of event a rule may run on: its index keys, the Sigma fields it carries and under what names.

    A field the source does not carry is absent there for every rule (as a field missing from an event is):
    `carries` decides it from `provides` (Windows; None: any field, the record's own names) or from the
    table's columns and the renamed fields (telemetry). `constants` are Sigma fields with one value for every
    event of the source (auditd's `type`, `Initiated`), `derived` the fields computed per event from a column
    (auditd's `a0..aN` and `argc` from the command line; see DERIVATIONS)."""

    name: str
    keys: tuple[tuple[str, str], ...]
    fields: Mapping[str, str]
    provides: frozenset[str] | None
    table: str | None  # telemetry sources: the table whose columns are valid identity fields
    constants: Mapping[str, str] = field(default_factory=dict)
    derived: Mapping[str, str] = field(default_factory=dict)  # derivation -> the column it reads

    def carries(self, sigma_field: str) -> bool:
        if sigma_field in self.constants or self.derived_from(sigma_field) is not None:
            return True
        if self.provides is not None:
            return sigma_field in self.provides
        if self.table is not None:
            return sigma_field in self.fields or sigma_field in TABLES[self.table].column_names
        return True

    def derived_from(self, sigma_field: str) -> tuple[str, str] | None:
        """(derivation, column) when the source computes the field per event instead of reading it."""
        kind = derivation_of(sigma_field)
        return (kind, self.derived[kind]) if kind is not None and kind in self.derived else None


@dataclass(frozen=True)
class SourceMapping:
    """A domain's mapping: Sigma (product, category, service) -> event sources."""

    domain: str
    product: str
    categories: Mapping[str, tuple[EventSource, ...]]
    services: Mapping[str, tuple[EventSource, ...]]
    origin: str

    def sources(self, logsource: LogSource) -> tuple[tuple[EventSource, ...], str | None]:
        """The event sources of a rule's log source in this domain, or none and the reason why. Which of them
        the rule can match on is the compiler's to decide (field absence, constants)."""
        if logsource.product and logsource.product.lower() != self.product:
            return (), f"product {logsource.product!r} is not {self.product!r}"
        entries: tuple[EventSource, ...]
        if logsource.category:
            entries = self.categories.get(logsource.category.lower(), ())
            if not entries:
                return (), f"no {self.domain} source for category {logsource.category!r}"
            if logsource.service:
                wanted = {k[0] for e in self.services.get(logsource.service.lower(), ()) for k in e.keys}
                entries = tuple(e for e in entries if any(k[0] in wanted for k in e.keys)) or entries
        elif logsource.service:
            entries = self.services.get(logsource.service.lower(), ())
            if not entries:
                return (), f"no {self.domain} source for service {logsource.service!r}"
        elif logsource.product:
            entries = (EventSource(f"any {self.domain} event", ((ANY, ANY),), {}, None, None),)
        else:
            return (), "log source names no product, category or service"
        return entries, None


def _entries(raw: Any, domain: str, origin: str, where: str) -> tuple[EventSource, ...]:
    if not isinstance(raw, list):
        raise MappingError(f"{origin}: {where}: expected a list of sources")
    out = []
    for item in raw:
        if not isinstance(item, dict):
            raise MappingError(f"{origin}: {where}: expected a mapping, got {item!r}")
        fields = {str(k): str(v) for k, v in (item.get("fields") or {}).items()}
        provides = item.get("provides")
        constants = {str(k): _constant(v) for k, v in (item.get("constants") or {}).items()}
        derived = {str(k): str(v) for k, v in (item.get("derived") or {}).items()}
        for kind in derived:
            if kind not in DERIVATIONS:
                raise MappingError(f"{origin}: {where}: unknown derivation {kind!r} (known: {', '.join(DERIVATIONS)})")
        if domain == WINDOWS:
            if "channel" not in item:
                raise MappingError(f"{origin}: {where}: a Windows source needs a channel")
            channel = str(item["channel"]).lower()
            ids = [str(i) for i in item.get("event_ids") or [ANY]]
            keys = tuple((channel, i) for i in ids)
            table = None
            if derived:
                raise MappingError(f"{origin}: {where}: derived fields are for telemetry sources")
            default_name = f"{item['channel']} {','.join(ids)}"
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
            for column in derived.values():
                if column not in TABLES[table].column_names:
                    raise MappingError(f"{origin}: {where}: {table} has no column {column!r} to derive from")
            keys = tuple((table.lower(), a) for a in actions)  # matched case-insensitively, like channels
            default_name = f"{table} {','.join(actions)}"
        out.append(EventSource(str(item.get("name") or default_name), keys, fields,
                               frozenset(provides) if provides is not None else None, table, constants,
                               derived))
    return tuple(out)


def _constant(value: Any) -> str:
    # As rules see event values: numbers as text, booleans as 'true'/'false'.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


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
