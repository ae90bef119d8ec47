"""The backup archive: a tar of AES-GCM-encrypted files and a manifest authenticated with the passphrase's key.

Layout: ``payload/<name>`` members, each the file encrypted in 1 MiB chunks (an 8-byte random prefix, then
for every chunk its ciphertext and tag; the nonce is prefix + chunk number, the associated data names the
file, the chunk and whether it is the last, so chunks cannot be reordered, moved between files or cut off),
then ``manifest.json`` and ``manifest.hmac``. The manifest lists each file's size, SHA-256 and mode both as
stored and as restored. A scrypt key from the passphrase gives the encryption key and the manifest's MAC key.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import secrets
import tarfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import IO, Final, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

FORMAT: Final = "vigil-backup/1"
MANIFEST = "manifest.json"
MANIFEST_MAC = "manifest.hmac"
PAYLOAD = "payload/"
CHUNK = 1 << 20
_TAG = 16
_PREFIX = 8
_KEY_CHECK = b"vigil-backup key check"
MIN_PASSPHRASE = 12


class BackupError(Exception):
    """A backup could not be written, read or restored; the message says what and where."""


class WrongPassphrase(BackupError):
    pass


class ArchiveDamaged(BackupError):
    """The archive differs from what it was written as: a changed byte, a missing or an extra member."""


class Kdf(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["scrypt"] = "scrypt"
    salt: str = Field(pattern=r"^[0-9a-f]{32,128}$")
    # Bounded so that a doctored manifest cannot make verify allocate gigabytes.
    n: int = Field(ge=2**14, le=2**20)
    r: int = Field(ge=1, le=16)
    p: int = Field(ge=1, le=4)


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=1024)
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    stored_size: int = Field(ge=0)
    stored_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    mode: int = Field(ge=0, le=0o777)


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["vigil-backup/1"] = FORMAT
    vigil_version: str
    created_at: datetime
    created_by: str
    host: str
    store_kind: Literal["sqlite", "postgresql"]
    schema_revision: str | None
    database_file: str
    telemetry_counts: dict[str, int]
    kdf: Kdf
    key_check: str
    files: list[FileEntry]

    @property
    def telemetry_rows(self) -> int:
        return sum(self.telemetry_counts.values())


class Keys:
    """The two keys a passphrase gives for one archive (its salt and cost)."""

    def __init__(self, passphrase: bytes, kdf: Kdf) -> None:
        raw = Scrypt(salt=bytes.fromhex(kdf.salt), length=64, n=kdf.n, r=kdf.r, p=kdf.p).derive(passphrase)
        self.aead = AESGCM(raw[:32])
        self.mac = raw[32:]

    def key_check(self) -> str:
        return hmac.new(self.mac, _KEY_CHECK, hashlib.sha256).hexdigest()

    def sign(self, manifest: bytes) -> str:
        return hmac.new(self.mac, manifest, hashlib.sha256).hexdigest()


def new_kdf() -> Kdf:
    return Kdf(salt=secrets.token_hex(16), n=2**15, r=8, p=1)


def _aad(name: str, index: int, last: bool) -> bytes:
    return f"{FORMAT}\0{name}\0{index}\0{int(last)}".encode()


def _chunks(f: IO[bytes], size: int) -> Iterator[tuple[bytes, bool]]:
    """The file's chunks, each with whether it is the last; an empty file is one empty last chunk."""
    current = f.read(size)
    while True:
        following = f.read(size) if len(current) == size else b""
        yield current, not following
        if not following:
            return
        current = following


class ArchiveWriter:
    """Writes ``<path>.partial`` and renames it to ``path`` on ``finish``, so a failed backup leaves no archive."""

    def __init__(self, path: Path, passphrase: bytes, staging: Path) -> None:
        if len(passphrase) < MIN_PASSPHRASE:
            raise BackupError(f"the passphrase must be at least {MIN_PASSPHRASE} characters")
        self.path = path
        self.partial = path.with_name(path.name + ".partial")
        self.staging = staging
        self.kdf = new_kdf()
        self.keys = Keys(passphrase, self.kdf)
        self.entries: list[FileEntry] = []
        fd = os.open(self.partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        # Closed by finish() or abort(): the writer outlives any one block.
        self.file = os.fdopen(fd, "wb")
        self.tar = tarfile.open(fileobj=self.file, mode="w:", format=tarfile.PAX_FORMAT)  # noqa: SIM115

    def add(self, name: str, source: Path, mode: int) -> FileEntry:
        sealed = self.staging / f"sealed-{len(self.entries)}"
        plain, stored = hashlib.sha256(), hashlib.sha256()
        size = stored_size = 0
        prefix = secrets.token_bytes(_PREFIX)
        with source.open("rb") as src, sealed.open("wb") as out:
            out.write(prefix)
            stored.update(prefix)
            stored_size += _PREFIX
            for index, (chunk, last) in enumerate(_chunks(src, CHUNK)):
                plain.update(chunk)
                size += len(chunk)
                sealed_chunk = self.keys.aead.encrypt(prefix + index.to_bytes(4, "big"), chunk, _aad(name, index, last))
                out.write(sealed_chunk)
                stored.update(sealed_chunk)
                stored_size += len(sealed_chunk)
        info = tarfile.TarInfo(PAYLOAD + name)
        info.size, info.mode, info.mtime = stored_size, 0o600, int(time.time())
        with sealed.open("rb") as f:
            self.tar.addfile(info, f)
        sealed.unlink()
        entry = FileEntry(name=name, size=size, sha256=plain.hexdigest(), stored_size=stored_size,
                          stored_sha256=stored.hexdigest(), mode=mode & 0o777)
        self.entries.append(entry)
        return entry

    def finish(self, manifest: Manifest) -> None:
        body = manifest.model_dump_json(indent=2).encode()
        for name, data in ((MANIFEST, body), (MANIFEST_MAC, self.keys.sign(body).encode())):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
            self.tar.addfile(info, io.BytesIO(data))
        self.tar.close()
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.partial, self.path)

    def abort(self) -> None:
        self.tar.close()
        self.file.close()
        self.partial.unlink(missing_ok=True)


class ArchiveReader:
    """An archive opened for reading: its members checked against its manifest before anything is decrypted."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.tar = tarfile.open(path, mode="r:")  # noqa: SIM115  # closed by close()
            members = self.tar.getmembers()
        except FileNotFoundError:
            raise BackupError(f"{path} does not exist") from None
        except (tarfile.TarError, OSError) as e:
            raise ArchiveDamaged(f"{path} is not a Vigil backup archive (not a readable tar file: {e})") from None
        self.members = {m.name: m for m in members}
        if len(self.members) != len(members):
            raise ArchiveDamaged(f"{path}: a member name appears twice")
        for m in members:
            if not m.isfile():
                raise ArchiveDamaged(f"{path}: member {m.name!r} is not a regular file")
        for required in (MANIFEST, MANIFEST_MAC):
            if required not in self.members:
                raise ArchiveDamaged(f"{path} is not a Vigil backup archive: it has no {required}")
        self.manifest_bytes = self._read_small(MANIFEST)
        try:
            self.manifest = Manifest.model_validate_json(self.manifest_bytes)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ArchiveDamaged(f"{path}: manifest.json: {where}: {first['msg']}") from None
        listed = {PAYLOAD + f.name for f in self.manifest.files}
        for f in self.manifest.files:
            _safe_name(f.name)
        present = set(self.members) - {MANIFEST, MANIFEST_MAC}
        if missing := sorted(listed - present):
            raise ArchiveDamaged(f"{path}: the manifest lists {missing[0]} but the archive does not hold it")
        if extra := sorted(present - listed):
            raise ArchiveDamaged(f"{path}: the archive holds {extra[0]}, which the manifest does not list")
        self.keys: Keys | None = None

    def _read_small(self, name: str, limit: int = 16 << 20) -> bytes:
        member = self.members[name]
        if member.size > limit:
            raise ArchiveDamaged(f"{self.path}: {name} is {member.size} bytes, more than a manifest can be")
        f = self.tar.extractfile(member)
        assert f is not None
        return f.read()

    def unlock(self, passphrase: bytes) -> None:
        """Derive the keys; the key check tells a wrong passphrase from a changed manifest."""
        keys = Keys(passphrase, self.manifest.kdf)
        if not hmac.compare_digest(keys.key_check(), self.manifest.key_check):
            raise WrongPassphrase("wrong passphrase: it does not open this archive")
        mac = self._read_small(MANIFEST_MAC).decode("ascii", "replace").strip()
        if not hmac.compare_digest(keys.sign(self.manifest_bytes), mac):
            raise ArchiveDamaged(f"{self.path}: manifest.json was changed after the backup was written")
        self.keys = keys

    def extract(self, entry: FileEntry, out: IO[bytes] | None) -> None:
        """Decrypt ``entry`` into ``out`` (or only check it), proving both of its checksums and its size."""
        if self.keys is None:
            raise RuntimeError("unlock the archive first")
        member = self.members[PAYLOAD + entry.name]
        if member.size != entry.stored_size:
            raise ArchiveDamaged(f"{entry.name}: {member.size} bytes stored, the manifest says {entry.stored_size}")
        f = self.tar.extractfile(member)
        assert f is not None
        stored, plain = hashlib.sha256(), hashlib.sha256()
        prefix = f.read(_PREFIX)
        stored.update(prefix)
        if len(prefix) != _PREFIX:
            raise ArchiveDamaged(f"{entry.name}: truncated")
        size = 0
        for index, (sealed, last) in enumerate(_chunks(f, CHUNK + _TAG)):
            stored.update(sealed)
            try:
                chunk = self.keys.aead.decrypt(prefix + index.to_bytes(4, "big"), sealed, _aad(entry.name, index, last))
            except InvalidTag:
                raise ArchiveDamaged(
                    f"{entry.name}: chunk {index} fails authentication (the archive was changed or is corrupt)"
                ) from None
            plain.update(chunk)
            size += len(chunk)
            if out is not None:
                out.write(chunk)
        if stored.hexdigest() != entry.stored_sha256:
            raise ArchiveDamaged(f"{entry.name}: the stored bytes' SHA-256 differs from the manifest's")
        if size != entry.size or plain.hexdigest() != entry.sha256:
            raise ArchiveDamaged(f"{entry.name}: the decrypted content's size or SHA-256 differs from the manifest's")

    def close(self) -> None:
        self.tar.close()


def _safe_name(name: str) -> PurePosixPath:
    """A relative path inside the archive's tree: never absolute, never climbing out with '..'."""
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts or not p.parts or name != p.as_posix():
        raise ArchiveDamaged(f"the manifest names an unsafe path {name!r}")
    return p


def archive_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()
