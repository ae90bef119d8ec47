"""Definitions: what an engine matches with — hashes, compiled YARA rules, the heuristics it may run."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import yara_x

from vigil.av.hashes import HashStore
from vigil.av.heuristics import HEURISTICS_VERSION

BUILTIN_VERSION = 0


@dataclass
class Definitions:
    version: int  # a bundle's version (monotonic); 0 for the built-in definitions alone
    created: datetime | None = None
    heuristics_version: int = HEURISTICS_VERSION
    hashes: HashStore = field(default_factory=HashStore)
    rules: yara_x.Rules | None = None
    yara_rule_count: int = 0
    sources: list[str] = field(default_factory=list)

    @property
    def cache_version(self) -> str:
        """What a cached verdict was decided with: a new bundle or new heuristics invalidate it."""
        return f"{self.version}.{self.heuristics_version}"

    def summary(self) -> dict[str, object]:
        return {"version": self.version, "created": self.created.isoformat() if self.created else None,
                "heuristics_version": self.heuristics_version, "hashes": self.hashes.counts(),
                "yara_rules": self.yara_rule_count, "builtin": ["eicar"], "sources": self.sources}


def builtin() -> Definitions:
    """The built-in definitions: EICAR and the heuristics; useful with no bundle at all."""
    return Definitions(version=BUILTIN_VERSION)
