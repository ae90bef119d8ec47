"""One registry for every extension point: named entries, a duplicate name raises, an unknown name lists the known.

Sensors and response actions use it now; heuristics, ASR rules, exporters and playbooks register the same way.
The error classes are the caller's choice, so each extension point keeps its own exceptions (``DuplicateSensor``);
by default they are ``DuplicateName`` and ``UnknownName``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class RegistryError(Exception):
    pass


class DuplicateName(RegistryError, ValueError):
    """A second entry under a name already taken."""


class UnknownName(RegistryError, LookupError):
    """A name nothing is registered under; the message lists the names that are."""


class Registry(Generic[T]):
    """Entries under unique names, kept in registration order."""

    def __init__(
        self,
        kind: str,
        *,
        duplicate: type[Exception] = DuplicateName,
        unknown: type[Exception] = UnknownName,
    ) -> None:
        # ``kind`` names what is registered ("sensor", "action type"), for the error messages.
        self.kind = kind
        self._duplicate, self._unknown = duplicate, unknown
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        """Add ``entry`` under ``name``; raises the duplicate error when the name is taken. Returns ``entry``."""
        if not name:
            raise ValueError(f"every {self.kind} needs a name")
        if name in self._entries:
            raise self._duplicate(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def add(self, name: str) -> Callable[[T], T]:
        """``register`` as a decorator: ``@registry.add("name")``."""
        return lambda entry: self.register(name, entry)

    def get(self, name: str) -> T:
        """The entry under ``name``; raises the unknown error, which lists the known names."""
        try:
            return self._entries[name]
        except KeyError:
            raise self._unknown(self._unknown_message([name])) from None

    def find(self, name: str) -> T | None:
        """The entry under ``name``, or None."""
        return self._entries.get(name)

    def check_known(self, names: Iterable[str]) -> None:
        """Raise the unknown error naming every one of ``names`` that is not registered (e.g. from a config file)."""
        unknown = sorted(set(names) - set(self._entries))
        if unknown:
            raise self._unknown(self._unknown_message(unknown))

    def _unknown_message(self, names: list[str]) -> str:
        what = f"{self.kind} {names[0]!r}" if len(names) == 1 else f"{self.kind}s {names}"
        return f"unknown {what}; known: {', '.join(self._entries) or '(none)'}"

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(list(self._entries.items()))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)
