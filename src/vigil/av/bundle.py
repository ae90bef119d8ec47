"""Definition bundles: YARA rules (compiled), hash lists and a heuristics version in one Ed25519-signed file.

Layout: ``MAGIC``, u32 header length, the header (JSON), u32 signature length, the Ed25519 signature over
magic + header, then the payload (zlib) whose SHA-256 the header carries. The signer's key in the header is
only a label: trust comes from the key the caller passes (the server's action-signing key, pinned by agents).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from vigil.av import yara
from vigil.av.definitions import Definitions
from vigil.av.hashes import ALGORITHMS, HashStore, parse_hash_list
from vigil.av.heuristics import HEURISTICS_VERSION

MAGIC = b"VIGIL-AV-BUNDLE\x01"
FORMAT = 1
SUFFIX = ".vab"
_DIGEST_SIZE = {a: n // 2 for n, a in ALGORITHMS.items()}


class BundleError(ValueError):
    """A bundle that is refused: not a bundle, altered, signed by another key, older than installed, too new."""


@dataclass(frozen=True)
class BuildReport:
    version: int
    yara: yara.CompileReport
    hashes: dict[str, int]
    size: int


def _public_text(key: Ed25519PublicKey) -> str:
    return base64.b64encode(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()


def public_key_from_text(text: str) -> Ed25519PublicKey:
    """An Ed25519 public key from raw base64 (as agents pin it) or a PEM file's text."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
            if not isinstance(key, Ed25519PublicKey):
                raise BundleError("the public key is not an Ed25519 key")
            return key
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except (ValueError, TypeError) as e:
        if isinstance(e, BundleError):
            raise
        raise BundleError(f"not an Ed25519 public key (raw base64 or PEM): {e}") from None


def _hash_section(store: HashStore) -> bytes:
    algorithms = {a: len(t) for a, t in store.by_algorithm.items()}
    head = json.dumps({"names": store.names, "algorithms": algorithms}).encode()
    parts = [struct.pack("<I", len(head)), head]
    for table in store.by_algorithm.values():
        parts.append(b"".join(table.keys()))
        parts.append(struct.pack(f"<{len(table)}I", *table.values()))
    return b"".join(parts)


def _read_hash_section(data: bytes) -> HashStore:
    n, = struct.unpack_from("<I", data, 0)
    head = json.loads(data[4:4 + n])
    store = HashStore(names=list(head["names"]))
    off = 4 + n
    for a, count in head["algorithms"].items():
        size = _DIGEST_SIZE[a]
        digests = data[off:off + count * size]
        off += count * size
        indexes = struct.unpack_from(f"<{count}I", data, off)
        off += 4 * count
        store.by_algorithm[a] = {digests[i * size:(i + 1) * size]: indexes[i] for i in range(count)}
    return store


def _sections(items: dict[str, bytes]) -> bytes:
    out = [struct.pack("<I", len(items))]
    for name, data in items.items():
        raw = name.encode()
        out += [struct.pack("<H", len(raw)), raw, struct.pack("<Q", len(data)), data]
    return b"".join(out)


def _read_sections(data: bytes) -> dict[str, bytes]:
    count, = struct.unpack_from("<I", data, 0)
    off, out = 4, {}
    for _ in range(count):
        n, = struct.unpack_from("<H", data, off)
        name = data[off + 2:off + 2 + n].decode()
        off += 2 + n
        size, = struct.unpack_from("<Q", data, off)
        off += 8
        out[name] = data[off:off + size]
        off += size
    return out


def build(key: Ed25519PrivateKey, *, yara_paths: Sequence[Path] = (), hash_lists: Sequence[Path] = (),
          version: int | None = None, heuristics_version: int = HEURISTICS_VERSION,
          now: datetime | None = None) -> tuple[bytes, BuildReport]:
    """A signed bundle from YARA files/folders and hash lists; ``version`` defaults to the time in seconds."""
    now = now or datetime.now(UTC)
    version = version if version is not None else int(now.timestamp())
    if version <= 0:
        raise BundleError(f"bundle version must be positive, not {version}")
    store = HashStore()
    for path in hash_lists:
        parse_hash_list(path.read_text(encoding="utf-8", errors="replace"), str(path), store)
    report = yara.CompileReport()
    sections = {"hashes": _hash_section(store)}
    if yara_paths:
        rules, report = yara.compile_folders(yara_paths)
        sections["yara"] = yara.serialize(rules)
    payload = zlib.compress(_sections(sections), 6)
    header = json.dumps({
        "format": FORMAT, "version": version, "created": now.isoformat(), "heuristics_version": heuristics_version,
        "signer": _public_text(key.public_key()), "payload_sha256": hashlib.sha256(payload).hexdigest(),
        "payload_size": len(payload), "hashes": store.counts(), "yara_rules": report.rules,
        "yara_refused": report.refused,
        "sources": [str(p) for p in (*yara_paths, *hash_lists)],
    }, sort_keys=True).encode()
    signature = key.sign(MAGIC + header)
    data = MAGIC + struct.pack("<I", len(header)) + header + struct.pack("<I", len(signature)) + signature + payload
    return data, BuildReport(version, report, store.counts(), len(data))


def read_header(data: bytes, trusted: Sequence[Ed25519PublicKey], origin: str = "bundle") -> dict[str, object]:
    """The bundle's header once its signature verifies with one of ``trusted``; BundleError otherwise."""
    if not data.startswith(MAGIC):
        raise BundleError(f"{origin} is not a Vigil definition bundle")
    if not trusted:
        raise BundleError(f"{origin}: no trusted public key to verify it with")
    try:
        off = len(MAGIC)
        n, = struct.unpack_from("<I", data, off)
        header_bytes = data[off + 4:off + 4 + n]
        off += 4 + n
        m, = struct.unpack_from("<I", data, off)
        signature = data[off + 4:off + 4 + m]
        payload = data[off + 4 + m:]
    except struct.error:
        raise BundleError(f"{origin} is truncated") from None
    for key in trusted:
        try:
            key.verify(signature, MAGIC + header_bytes)
            break
        except InvalidSignature:
            continue
    else:
        raise BundleError(f"{origin}: signature does not verify with the trusted key: the bundle was altered or "
                          "signed by another key; refused")
    header: dict[str, object] = json.loads(header_bytes)
    if header.get("format") != FORMAT:
        raise BundleError(f"{origin}: bundle format {header.get('format')} is not {FORMAT}; refused")
    if hashlib.sha256(payload).hexdigest() != header["payload_sha256"]:
        raise BundleError(f"{origin}: content does not match its signed digest: the bundle was altered; refused")
    hv = header.get("heuristics_version")
    if not isinstance(hv, int) or hv > HEURISTICS_VERSION:
        raise BundleError(f"{origin}: built for heuristics version {hv}; this engine has {HEURISTICS_VERSION}; "
                          "update Vigil first")
    header["_payload_offset"] = len(data) - len(payload)
    return header


def read_bundle(data: bytes, trusted: Sequence[Ed25519PublicKey], origin: str = "bundle") -> Definitions:
    """Verified definitions from a bundle's bytes; BundleError for anything not signed by a trusted key."""
    header = read_header(data, trusted, origin)
    offset = header["_payload_offset"]
    assert isinstance(offset, int)
    sections = _read_sections(zlib.decompress(data[offset:]))
    rules = yara.deserialize(sections["yara"]) if "yara" in sections else None
    yr = header.get("yara_rules", 0)
    version, created, hv = header["version"], header["created"], header["heuristics_version"]
    assert isinstance(version, int) and isinstance(created, str) and isinstance(hv, int)
    return Definitions(version=version, created=datetime.fromisoformat(created), heuristics_version=hv,
                       hashes=_read_hash_section(sections["hashes"]), rules=rules,
                       yara_rule_count=yr if isinstance(yr, int) else 0,
                       sources=[str(s) for s in header.get("sources", []) or []])  # type: ignore[attr-defined]


class InstalledDefinitions:
    """The definitions folder: ``current.vab`` and ``previous.vab`` (kept for rollback); root-only."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.current = folder / f"current{SUFFIX}"
        self.previous = folder / f"previous{SUFFIX}"

    def installed_header(self, trusted: Sequence[Ed25519PublicKey]) -> dict[str, object] | None:
        if not self.current.exists():
            return None
        return read_header(self.current.read_bytes(), trusted, str(self.current))

    def load(self, trusted: Sequence[Ed25519PublicKey]) -> Definitions | None:
        """The installed definitions, verified again at each load; None when nothing is installed."""
        if not self.current.exists():
            return None
        return read_bundle(self.current.read_bytes(), trusted, str(self.current))

    def install(self, data: bytes, trusted: Sequence[Ed25519PublicKey], origin: str) -> dict[str, object]:
        """Verify and install a bundle; an older (or the same) version than the installed one is refused."""
        header = read_header(data, trusted, origin)
        new_version = header["version"]
        assert isinstance(new_version, int)
        if self.current.exists():
            try:
                old = read_header(self.current.read_bytes(), trusted, str(self.current))
            except BundleError:
                old = None  # a damaged installed bundle does not block its replacement
            old_version = old["version"] if old else 0
            assert isinstance(old_version, int)
            if new_version < old_version:
                raise BundleError(f"{origin}: version {new_version} is older than the installed {old_version}: "
                                  "a downgrade is refused")
            if new_version == old_version:
                raise BundleError(f"{origin}: version {new_version} is already installed")
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        tmp = self.folder / f".incoming{SUFFIX}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if self.current.exists():
            os.replace(self.current, self.previous)
        os.replace(tmp, self.current)
        return header
