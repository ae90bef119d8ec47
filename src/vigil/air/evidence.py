"""Evidence gathering: the narrow source a playbook reads, and what it has found so far."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from vigil.air.model import Entity, EntityKind

Row = Mapping[str, Any]


class EvidenceSource(Protocol):
    """Stored telemetry of one device in a time window (Defender's advanced-hunting tables, as rows)."""

    def rows(self, table: str, device_id: str, start: datetime, end: datetime) -> Sequence[Row]: ...


@dataclass(frozen=True)
class Seed:
    """Where an investigation starts: the alert's evidence rows, or nothing (a device investigated by hand)."""

    device_id: str
    start: datetime
    end: datetime
    alert_rows: tuple[Row, ...] = ()


@dataclass
class Findings:
    """Entities by key, found so far, and the log of what each step did; a playbook run's working state."""

    seed: Seed
    entities: dict[str, Entity] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    # Process keys that make up the tree around the alert (what files, network and users are read for).
    tree_pids: set[int] = field(default_factory=set)

    def add(self, entity: Entity) -> Entity:
        """Keep one entity per key; a later sighting adds facts and parents it did not have."""
        old = self.entities.get(entity.key)
        if old is None:
            self.entities[entity.key] = entity
            return entity
        facts = {**entity.facts, **{k: v for k, v in old.facts.items() if v not in (None, "")}}
        merged = replace(old, facts=facts, parents=tuple(dict.fromkeys(old.parents + entity.parents)))
        self.entities[entity.key] = merged
        return merged

    def of_kind(self, kind: EntityKind) -> list[Entity]:
        return [e for e in self.entities.values() if e.kind is kind]


def as_text(value: Any) -> str:
    """A telemetry time as ISO text whether the store gave a datetime or a string."""
    return value.isoformat() if hasattr(value, "isoformat") else str(value or "")


def process_key(device_id: str, pid: Any, created: Any) -> str:
    return f"process:{device_id}:{pid}:{as_text(created)}"


def file_key(device_id: str, path: str) -> str:
    return f"file:{device_id}:{path}"
