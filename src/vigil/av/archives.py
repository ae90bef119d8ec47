"""Archive members for scanning: zip, tar, gzip, bzip2 and xz, nested, within bomb limits (depth, ratio, size)."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

_CHUNK = 1 << 16


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class Limits:
    max_depth: int = 5  # archives inside archives
    max_ratio: int = 200  # unpacked bytes per packed byte, for one member
    max_member_size: int = 128 << 20  # bytes of one unpacked member
    max_total_size: int = 512 << 20  # bytes unpacked from one file, all members together
    max_members: int = 10_000


class LimitExceeded(Exception):
    """An archive went past a bomb limit; the scan stops unpacking it and says so."""


def kind(data: bytes) -> str | None:
    if data.startswith(b"PK\x03\x04") or data.startswith(b"PK\x05\x06"):
        return "zip"
    if data.startswith(b"\x1f\x8b"):
        return "gz"
    if data.startswith(b"BZh"):
        return "bz2"
    if data.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if len(data) > 262 and data[257:262] == b"ustar":
        return "tar"
    return None


class Budget:
    """The bytes one top-level file may still unpack, shared by all its nested members."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.total = 0
        self.members = 0

    def take(self, n: int) -> None:
        self.total += n
        if self.total > self.limits.max_total_size:
            raise LimitExceeded(f"unpacked size above {self.limits.max_total_size} bytes")

    def member(self) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise LimitExceeded(f"more than {self.limits.max_members} archive members")


def _read_limited(stream: _Readable, packed: int, budget: Budget) -> bytes:
    limits = budget.limits
    cap = min(limits.max_member_size, max(packed, 1) * limits.max_ratio)
    out = bytearray()
    while chunk := stream.read(_CHUNK):
        out += chunk
        budget.take(len(chunk))
        if len(out) > cap:
            why = (f"member larger than {limits.max_member_size} bytes" if cap == limits.max_member_size
                   else f"compression ratio above {limits.max_ratio}:1")
            raise LimitExceeded(why)
    return bytes(out)


def members(data: bytes, budget: Budget) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of each member one level down; raises LimitExceeded past a limit."""
    k = kind(data)
    if k == "zip":
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            for info in z.infolist():
                if info.is_dir():
                    continue
                budget.member()
                with z.open(info) as f:
                    yield info.filename, _read_limited(f, info.compress_size, budget)
    elif k == "tar":
        yield from _tar_members(io.BytesIO(data), budget)
    elif k in ("gz", "bz2", "xz"):
        budget.member()
        raw = io.BytesIO(data)
        with _decompressor(k, raw) as f:
            inner = _read_limited(f, len(data), budget)
        if kind(inner) == "tar":
            yield from _tar_members(io.BytesIO(inner), budget)
        else:
            yield "(" + k + " content)", inner


def _decompressor(k: str, raw: io.BytesIO) -> gzip.GzipFile | bz2.BZ2File | lzma.LZMAFile:
    if k == "gz":
        return gzip.GzipFile(fileobj=raw)
    return bz2.BZ2File(raw) if k == "bz2" else lzma.LZMAFile(raw)


def _tar_members(buf: io.BytesIO, budget: Budget) -> Iterator[tuple[str, bytes]]:
    with tarfile.open(fileobj=buf, mode="r:") as t:
        for info in t:
            if not info.isfile():
                continue
            budget.member()
            f = t.extractfile(info)
            if f is not None:
                yield info.name, _read_limited(f, info.size, budget)  # stored, not compressed: no ratio


UNREADABLE = (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError, ValueError,
              NotImplementedError, RuntimeError)
