"""Hash signatures: SHA-256 (Vigil's own lists), SHA-1 and MD5 (imported lists), each an indexed set."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from vigil.av.model import Source, Threat, severity_for, type_of_name

ALGORITHMS = {32: "md5", 40: "sha1", 64: "sha256"}  # hex length -> algorithm


class HashListError(ValueError):
    def __init__(self, origin: str, line: int, message: str) -> None:
        super().__init__(f"{origin}:{line}: {message}")
        self.origin, self.line = origin, line


@dataclass
class HashStore:
    """Digest -> index into ``names``, one dict per algorithm (O(1) lookup, ~100 bytes an entry)."""

    names: list[str] = field(default_factory=list)
    by_algorithm: dict[str, dict[bytes, int]] = field(default_factory=dict)
    _name_index: dict[str, int] = field(default_factory=dict, repr=False)

    def add(self, digest_hex: str, name: str) -> None:
        algorithm = ALGORITHMS.get(len(digest_hex))
        if algorithm is None:
            raise ValueError(f"{digest_hex!r} is not an MD5, SHA-1 or SHA-256 hex digest")
        digest = bytes.fromhex(digest_hex)
        index = self._name_index.get(name)
        if index is None:
            index = self._name_index[name] = len(self.names)
            self.names.append(name)
        self.by_algorithm.setdefault(algorithm, {})[digest] = index

    def __len__(self) -> int:
        return sum(len(d) for d in self.by_algorithm.values())

    def counts(self) -> dict[str, int]:
        return {a: len(d) for a, d in sorted(self.by_algorithm.items())}

    @property
    def algorithms(self) -> tuple[str, ...]:
        return tuple(self.by_algorithm)

    def lookup(self, digests: dict[str, bytes]) -> Threat | None:
        """The threat whose hash is among ``digests`` (algorithm -> raw digest), or None."""
        for algorithm, digest in digests.items():
            index = self.by_algorithm.get(algorithm, {}).get(digest)
            if index is not None:
                name = self.names[index]
                type_ = type_of_name(name)
                return Threat(name, type_, severity_for(type_), Source.HASH, f"{algorithm}:{digest.hex()}")
        return None

    def entries(self) -> Iterator[tuple[str, str, str]]:
        """(algorithm, hex digest, name) for every entry."""
        for algorithm, table in self.by_algorithm.items():
            for digest, index in table.items():
                yield algorithm, digest.hex(), self.names[index]

    def wanted(self) -> tuple[str, ...]:
        """The algorithms a file must be hashed with: SHA-256 always (it names files in reports)."""
        return ("sha256", *(a for a in ("sha1", "md5") if a in self.by_algorithm))


def digests_of(data: bytes, algorithms: Iterable[str]) -> dict[str, bytes]:
    return {a: hashlib.new(a, data).digest() for a in algorithms}


DEFAULT_HASH_THREAT = "Trojan:Linux/KnownHash"


def parse_hash_list(text: str, origin: str, store: HashStore, default_name: str = DEFAULT_HASH_THREAT) -> int:
    """Add a hash list to ``store``; returns how many entries it had.

    Lines: ``HEX``, ``HEX NAME`` (white space or a comma between), or ClamAV's ``HEX:SIZE:NAME`` (.hdb/.hsb);
    '#' starts a comment. A bad line is an error naming the file and line.
    """
    n = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if ":" in line.split()[0] and len(parts := line.split(":")) >= 3:
            digest, name = parts[0], parts[2]
        else:
            fields = line.replace(",", " ").split(None, 1)
            digest, name = fields[0], (fields[1].strip() if len(fields) > 1 else default_name)
        digest = digest.lower()
        if len(digest) not in ALGORITHMS or any(c not in "0123456789abcdef" for c in digest):
            raise HashListError(origin, number, f"{digest[:80]!r} is not an MD5, SHA-1 or SHA-256 hex digest")
        store.add(digest, _threat_name(name))
        n += 1
    return n


def _threat_name(name: str) -> str:
    """Defender-style: a bare name ``Mirai`` becomes ``Trojan:Linux/Mirai``, ``Linux/Mirai`` ``Trojan:Linux/Mirai``;
    ``Category:Platform/Name`` is kept."""
    if ":" in name and "/" in name:
        return name
    return f"Trojan:{name}" if "/" in name else f"Trojan:Linux/{name}"

