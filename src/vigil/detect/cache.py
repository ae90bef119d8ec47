"""Compiled-rule cache on disk, keyed by a hash of the rule files, the mappings, the filter and the engine."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import marshal
import os
import pickle
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from types import CodeType
from typing import Any, overload

from vigil.core.attack import AttackTactic
from vigil.core.severity import RuleLevel
from vigil.detect.correlation import Correlation
from vigil.detect.model import AbsentFields, LogSource, RuleInfo, RuleLoadError, RuleNote
from vigil.detect.sources import RuleSource

# Bump when the entry layout changes; engine code changes are covered by the source hash below.
_FORMAT = b"vigil-rules-cache-7"


def default_cache_dir(xdg_cache_home: str | None, home: Path) -> Path:
    """`$XDG_CACHE_HOME/vigil/rules`, else `~/.cache/vigil/rules`; the edge reads the variable and the home."""
    base = Path(xdg_cache_home) if xdg_cache_home else home / ".cache"
    return base / "vigil" / "rules"


@cache
def _engine_fingerprint() -> bytes:
    """The engine's own code and data (this package's files), pySigma's and Python's versions."""
    h = hashlib.sha256(_FORMAT)
    h.update(sys.version.encode())
    h.update(_pysigma_version().encode())
    root = resources.files("vigil.detect")
    for entry in sorted(_walk(root), key=lambda t: t[0]):
        h.update(entry[0].encode())
        h.update(entry[1])
    return h.digest()


def _pysigma_version() -> str:
    """pySigma's installed version, from its dist-info folder name (importlib.metadata costs more to
    import than a warm start should spend)."""
    spec = importlib.util.find_spec("sigma")
    if spec is not None and spec.origin:
        site = Path(spec.origin).parent.parent
        for name in os.listdir(site):
            if name.startswith("pysigma-") and name.endswith(".dist-info"):
                return name.removeprefix("pysigma-").removesuffix(".dist-info")
    from importlib import metadata

    return metadata.version("pysigma")


def _walk(node: object, prefix: str = "") -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for child in node.iterdir():  # type: ignore[attr-defined]
        name = f"{prefix}/{child.name}"
        if child.is_dir():
            if child.name != "__pycache__":
                out.extend(_walk(child, name))
        elif child.name.endswith((".py", ".yml", ".yaml")):
            out.append((name, child.read_bytes()))
    return out


def settings_text(*settings: object) -> str:
    """A stable text of dataclass settings (mappings, filter): sets sorted, independent of hash seeds."""
    def plain(o: object) -> object:
        if isinstance(o, set | frozenset):
            return sorted(o, key=str)
        if isinstance(o, Mapping):
            return dict(o)
        return str(o)
    return json.dumps([asdict(s) if is_dataclass(s) and not isinstance(s, type) else s for s in settings],
                      sort_keys=True, default=plain)


def cache_key(sources: Sequence[RuleSource], settings: str) -> str:
    """A hash of everything that decides the compiled result: any change gives a new key, never a stale hit."""
    h = hashlib.sha256(_engine_fingerprint())
    h.update(settings.encode())
    for s in sources:
        h.update(b"\0path\0" + str(s.path).encode())
        h.update(hashlib.sha256(s.data).digest())
    return h.hexdigest()


Row = tuple[Any, ...]  # a RuleInfo as plain values (marshal reads thousands of them far faster than pickle)


def rule_row(r: RuleInfo) -> Row:
    ls = r.logsource
    return (r.id, r.title, r.description, r.level.value, r.status, r.tags, r.author, r.references, r.techniques,
            tuple(t.value for t in r.tactics), (ls.product, ls.category, ls.service),
            None if r.path is None else str(r.path), r.falsepositives, r.name)


def rule_from_row(row: Row) -> RuleInfo:
    (rid, title, description, level, status, tags, author, references, techniques, tactics, logsource, path,
     falsepositives, name) = row
    return RuleInfo(rid, title, description, RuleLevel(level), status, tags, author, references, techniques,
                    tuple(AttackTactic(t) for t in tactics), LogSource(*logsource),
                    None if path is None else Path(path), falsepositives, name)


class LazyRules(Sequence[RuleInfo]):
    """Rule metadata kept as rows, each made a RuleInfo when first read: a warm start loads thousands of
    rules and reports on a few hundred."""

    __slots__ = ("_made", "_rows")

    def __init__(self, rows: Sequence[Row]) -> None:
        self._rows = rows
        self._made: list[RuleInfo | None] = [None] * len(rows)

    def __len__(self) -> int:
        return len(self._rows)

    def ids(self) -> list[str]:
        """Each rule's id, without making its RuleInfo."""
        return [row[0] for row in self._rows]

    def __eq__(self, other: object) -> bool:  # equal to the tuple of the same rules, as `RuleSet.rules` was
        if isinstance(other, LazyRules | tuple):
            return tuple(self) == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    @overload
    def __getitem__(self, index: int) -> RuleInfo: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[RuleInfo]: ...

    def __getitem__(self, index: int | slice) -> RuleInfo | Sequence[RuleInfo]:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(*index.indices(len(self))))
        rule = self._made[index]
        if rule is None:
            rule = self._made[index] = rule_from_row(self._rows[index])
        return rule


@dataclass(frozen=True)
class CacheEntry:
    """What a load produces, minus the parse: rule metadata and the generated module's code objects."""

    rules: Sequence[RuleInfo]
    code: tuple[CodeType, ...]
    errors: tuple[RuleLoadError, ...]
    notes: tuple[RuleNote, ...]
    files: int
    correlations: tuple[Correlation, ...] = ()
    absent: tuple[AbsentFields, ...] = ()


class RuleCache:
    """Entries in one directory, one file per key; a damaged or foreign entry is treated as a miss."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.bin"

    def get(self, key: str) -> CacheEntry | None:
        try:
            data = self._path(key).read_bytes()
        except OSError:
            return None
        try:
            meta_len = int.from_bytes(data[:8], "little")
            meta = pickle.loads(data[8:8 + meta_len])  # noqa: S301 - our own file, named by a content hash
            rows, code = marshal.loads(data[8 + meta_len:])  # noqa: S302 - as above, written by `put`
        except Exception:
            return None
        if (not isinstance(meta, tuple) or not isinstance(rows, tuple) or not isinstance(code, tuple)
                or not all(isinstance(c, CodeType) for c in code)):
            return None
        errors, notes, files, correlations, absent = meta
        return CacheEntry(LazyRules(rows), code, errors, notes, files, correlations, absent)

    def put(self, key: str, entry: CacheEntry) -> None:
        """Write atomically (a reader sees the old file or the whole new one); failures are the caller's."""
        self.directory.mkdir(parents=True, exist_ok=True)
        meta = pickle.dumps((entry.errors, entry.notes, entry.files, entry.correlations, entry.absent),
                            protocol=pickle.HIGHEST_PROTOCOL)
        rows = tuple(rule_row(r) for r in entry.rules)
        blob = len(meta).to_bytes(8, "little") + meta + marshal.dumps((rows, entry.code))
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(blob)
            os.replace(tmp, self._path(key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
