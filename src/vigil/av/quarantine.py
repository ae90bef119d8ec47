"""The quarantine: a root-only folder where files are kept neutralised (not runnable, not readable as themselves).

One entry is ``<id>`` (the content XOR-ed with a random key, behind a header; mode 0) and ``<id>.json`` (its
metadata, 0600: original path, mode, owner, times, hashes, threat). Other files named ``<id>.*`` belong to the
entry too (the agent keeps removed persistence units there) and go with it. Restore writes the original bytes
back with their mode, owner and times; remove purges.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import stat
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vigil.av.model import Threat

HEADER = b"VIGIL-QUARANTINE\x01"
_CHUNK = 1 << 20
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")


class QuarantineError(Exception):
    """A quarantine operation that cannot be done; the message says why (and nothing was changed)."""


@dataclass(frozen=True)
class Entry:
    id: str
    path: str
    size: int
    mode: int
    uid: int
    gid: int
    atime_ns: int
    mtime_ns: int
    sha256: str
    sha1: str
    md5: str
    quarantined_at: str
    threat: dict[str, str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        extra = d.pop("extra")
        return {**extra, **d}


_FIELDS = {f for f in Entry.__dataclass_fields__ if f != "extra"}


def _xor(chunk: bytes, key: bytes) -> bytes:
    stream = (key * (len(chunk) // len(key) + 1))[: len(chunk)]
    return (int.from_bytes(chunk, "little") ^ int.from_bytes(stream, "little")).to_bytes(len(chunk), "little")


class QuarantineStore:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _ready(self) -> Path:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        return self.folder

    def _check_id(self, entry_id: str) -> str:
        if not _ID.match(entry_id):
            raise QuarantineError(f"{entry_id!r} is not a quarantine id")
        return entry_id

    def add(self, path: Path, *, entry_id: str | None = None, threat: Threat | None = None,
            extra: dict[str, Any] | None = None, now: datetime | None = None) -> Entry:
        """Move ``path`` into the quarantine; the original is gone once this returns."""
        entry_id = self._check_id(entry_id or secrets.token_hex(16))
        try:
            st = path.lstat()
        except FileNotFoundError:
            raise QuarantineError(f"{path} does not exist") from None
        if not stat.S_ISREG(st.st_mode):
            raise QuarantineError(f"{path} is not a regular file; only files are quarantined")
        folder = self._ready()
        stored, meta_path = folder / entry_id, folder / f"{entry_id}.json"
        if stored.exists() or meta_path.exists():
            raise QuarantineError(f"quarantine id {entry_id} is already used")
        key = secrets.token_bytes(32)
        hashers = {a: hashlib.new(a) for a in ("sha256", "sha1", "md5")}
        size = 0
        fd = os.open(stored, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with path.open("rb") as src, os.fdopen(fd, "wb") as out:
                out.write(HEADER)
                while chunk := src.read(_CHUNK):
                    for h in hashers.values():
                        h.update(chunk)
                    out.write(_xor(chunk, key))
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(stored, 0)
            entry = Entry(entry_id, str(path), size, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_atime_ns,
                          st.st_mtime_ns, hashers["sha256"].hexdigest(), hashers["sha1"].hexdigest(),
                          hashers["md5"].hexdigest(), (now or datetime.now(UTC)).isoformat(),
                          threat.as_dict() if threat else None, dict(extra or {}))
            self._write_meta(entry, key)
            path.unlink()
        except BaseException:
            with contextlib.suppress(OSError):
                stored.unlink()
            with contextlib.suppress(OSError):
                meta_path.unlink()
            raise
        return entry

    def _write_meta(self, entry: Entry, key: bytes) -> None:
        meta_path = self.folder / f"{entry.id}.json"
        tmp = self.folder / f".{entry.id}.json.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({**entry.as_dict(), "key": key.hex()}, f, indent=2)
        os.replace(tmp, meta_path)

    def update_extra(self, entry_id: str, extra: dict[str, Any]) -> Entry:
        entry, key = self._read(entry_id)
        entry = Entry(**{**{k: getattr(entry, k) for k in _FIELDS}, "extra": {**entry.extra, **extra}})
        self._write_meta(entry, key)
        return entry

    def _read(self, entry_id: str) -> tuple[Entry, bytes]:
        self._check_id(entry_id)
        try:
            raw: dict[str, Any] = json.loads((self.folder / f"{entry_id}.json").read_text())
        except FileNotFoundError:
            raise QuarantineError(f"nothing is quarantined under {entry_id}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise QuarantineError(f"the metadata of quarantine entry {entry_id} is damaged: {e}") from None
        key = bytes.fromhex(raw.pop("key"))
        known = {k: raw.pop(k) for k in list(raw) if k in _FIELDS}
        return Entry(**known, extra=raw), key

    def get(self, entry_id: str) -> Entry:
        return self._read(entry_id)[0]

    def list(self) -> list[Entry]:
        if not self.folder.is_dir():
            return []
        out = []
        for meta in sorted(self.folder.glob("*.json")):
            with contextlib.suppress(QuarantineError):
                out.append(self.get(meta.stem))
        return sorted(out, key=lambda e: e.quarantined_at)

    def content(self, entry_id: str) -> Iterator[bytes]:
        """The original bytes, decoded chunk by chunk."""
        _, key = self._read(entry_id)
        with (self.folder / entry_id).open("rb") as f:
            if f.read(len(HEADER)) != HEADER:
                raise QuarantineError(f"quarantine entry {entry_id} is not a quarantined file")
            while chunk := f.read(_CHUNK):
                yield _xor(chunk, key)

    def restore(self, entry_id: str, to: Path | None = None) -> Entry:
        """Put the file back (bytes, mode, owner, times) where it was, or at ``to``; never over an existing file."""
        entry, _ = self._read(entry_id)
        target = to or Path(entry.path)
        if os.path.lexists(target):
            raise QuarantineError(f"{target} exists again; move it away before restoring")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".vigil-restore-{entry_id}"
        digest = hashlib.sha256()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in self.content(entry_id):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != entry.sha256:
                raise QuarantineError(f"the quarantined copy of {entry.path} no longer has SHA-256 {entry.sha256}")
            os.chown(tmp, entry.uid, entry.gid)
            os.chmod(tmp, entry.mode)
            os.utime(tmp, ns=(entry.atime_ns, entry.mtime_ns))
            os.link(tmp, target)  # fails if something appeared there meanwhile, unlike a rename
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        self._drop(entry_id, keep_extra_files=True)
        return entry

    def remove(self, entry_id: str) -> Entry:
        """Purge the entry and every file that belongs to it."""
        entry, _ = self._read(entry_id)
        self._drop(entry_id, keep_extra_files=False)
        return entry

    def _drop(self, entry_id: str, keep_extra_files: bool) -> None:
        (self.folder / entry_id).unlink(missing_ok=True)
        (self.folder / f"{entry_id}.json").unlink(missing_ok=True)
        if not keep_extra_files:
            for p in self.folder.glob(f"{entry_id}.*"):
                p.unlink(missing_ok=True)
