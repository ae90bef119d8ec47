"""Feed parsers: each turns one source's format into OSV-shaped advisories, with located errors."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FeedError(Exception):
    """A feed file or row that cannot be read: where, and what is wrong."""

    path: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}" if self.line is not None else f"{self.path}: {self.reason}"
