"""Damaged EVTX files: a cheap structural check, and recovery of every intact record around the damage."""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evtx import PyEvtxParser

FILE_HEADER_SIZE = 4096
CHUNK_SIZE = 65536
CHUNK_HEADER_SIZE = 512
FILE_MAGIC = b"ElfFile\0"
CHUNK_MAGIC = b"ElfChnk\0"
RECORD_MAGIC = b"**\0\0"
MIN_RECORD_SIZE = 32  # magic, size, id, time, at least one BinXML token, the size again
# pyevtx gives up a whole chunk on a record time past the year 9999 (a date it cannot make): such a record is
# taken for damaged.
MAX_FILETIME = 2_650_467_743_990_000_000

_Q = struct.Struct("<Q")
_I = struct.Struct("<I")


@dataclass(frozen=True)
class EvtxDamage:
    """What reading a damaged file cost: the records it still gave, those lost, the bytes that hold no
    readable record, and the first problem found (where and what)."""

    records_read: int
    records_skipped: int
    bytes_unreadable: int
    first_error: str


def _header_problem(header: bytes, size: int) -> tuple[str | None, int | None]:
    """(the file header's first problem or None, its chunk count when the header can be trusted)."""
    if size < FILE_HEADER_SIZE or len(header) < 128:
        return f"file is {size} bytes, shorter than the {FILE_HEADER_SIZE}-byte file header", None
    if header[:8] != FILE_MAGIC:
        return "file header: no ElfFile signature", None
    if zlib.crc32(header[:120]) != _I.unpack_from(header, 124)[0]:
        return "file header: checksum mismatch", None
    count = struct.unpack_from("<H", header, 42)[0]
    expected = FILE_HEADER_SIZE + count * CHUNK_SIZE
    if size < expected:
        whole = max(size - FILE_HEADER_SIZE, 0) // CHUNK_SIZE
        return f"truncated: {size} bytes, {whole} of the header's {count} chunks whole ({expected} bytes)", count
    return None, count


def _chunk_header_problem(index: int, header: bytes) -> str | None:
    where = f"chunk {index} at offset {FILE_HEADER_SIZE + index * CHUNK_SIZE}"
    if header[:8] != CHUNK_MAGIC:
        return f"{where}: no ElfChnk signature"
    if zlib.crc32(header[:120] + header[128:CHUNK_HEADER_SIZE]) != _I.unpack_from(header, 124)[0]:
        return f"{where}: header checksum mismatch"
    free = _I.unpack_from(header, 48)[0]
    if not CHUNK_HEADER_SIZE <= free <= CHUNK_SIZE:
        return f"{where}: free space offset {free} outside the chunk"
    return None


def check_evtx(path: Path) -> str | None:
    """The file header's first problem (signature, checksum, a size short of its chunks), or None.

    One read of the header: the fast path then parses with checksums validated, and pyevtx raises on a chunk
    whose header or records do not match theirs. A truncation it would not notice (it reads the chunks that are
    there and stops), nor a damaged file header, which it does not check.
    """
    fd = os.open(path, os.O_RDONLY)  # no file object: this runs before every intact file's parse
    try:
        header, size = os.pread(fd, 128, 0), os.fstat(fd).st_size
    finally:
        os.close(fd)
    return _header_problem(header, size)[0]


@dataclass
class _Chunk:
    """A chunk slot as found: its intact-looking records (offset, size, id), the ids it should hold and the
    end of its record data."""

    index: int
    records: list[tuple[int, int, int]]
    expected: range
    data_end: int


def _scan_chunk(index: int, slot: bytes, problems: list[str]) -> _Chunk:
    """Every record in a chunk slot that stands on its own: the signature, a size whose copy closes it, a time
    pyevtx can read, an id that continues the ones before it (within the header's range when that is intact)."""
    problem = (_chunk_header_problem(index, slot) if len(slot) >= CHUNK_HEADER_SIZE
               else f"chunk {index}: only {len(slot)} bytes of its header are in the file")
    header_ok = problem is None
    if problem is not None:
        problems.append(problem)
    low, high = 1, 1 << 63
    if header_ok:
        low, high = _Q.unpack_from(slot, 24)[0], _Q.unpack_from(slot, 32)[0]
    chain: list[tuple[int, int, int]] = []
    at = CHUNK_HEADER_SIZE
    end = len(slot)
    while (at := slot.find(RECORD_MAGIC, at, end - MIN_RECORD_SIZE + 1)) >= 0:
        size, rid, time = struct.unpack_from("<IQQ", slot, at + 4)
        if (MIN_RECORD_SIZE <= size <= end - at and _I.unpack_from(slot, at + size - 4)[0] == size
                and low <= rid <= high and time < MAX_FILETIME):
            chain.append((at, size, rid))
            at += size
        else:
            at += 1
    records = _consistent(chain, low if header_ok else None)
    if header_ok:
        free = _I.unpack_from(slot, 48)[0]
        if len(slot) < free:
            problems.append(f"chunk {index}: cut off at byte {len(slot)} of its {free} bytes of records")
        elif zlib.crc32(slot[CHUNK_HEADER_SIZE:free]) != _I.unpack_from(slot, 52)[0]:
            problems.append(f"chunk {index} at offset {FILE_HEADER_SIZE + index * CHUNK_SIZE}: "
                            "data checksum mismatch")
        expected = range(low, high + 1) if high >= low else range(0)
        data_end = min(free, len(slot))
    else:
        expected = range(records[0][2], records[-1][2] + 1) if records else range(0)
        # Without a header the records end where the slot's last non-zero byte is (unused space is zeros).
        data_end = max(len(slot.rstrip(b"\0")), CHUNK_HEADER_SIZE)
    return _Chunk(index, records, expected, data_end)


def _consistent(chain: list[tuple[int, int, int]], first_id: int | None) -> list[tuple[int, int, int]]:
    """The records of the chain that continue the ids before them: Windows numbers a chunk's records one by one,
    so the ids skipped since the last kept record must fit in the bytes between them. This drops a record whose
    id was damaged (instead of letting it hide the ones after it) and the stale records that chunk slack keeps
    from before the log was reused (older ids)."""
    kept: list[tuple[int, int, int]] = []
    end, last = CHUNK_HEADER_SIZE, (first_id - 1 if first_id is not None else None)
    for offset, size, rid in chain:
        if last is None or (last < rid and rid - last - 1 <= (offset - end) // MIN_RECORD_SIZE):
            kept.append((offset, size, rid))
            end, last = offset + size, rid
    return kept


def _filler(size: int) -> bytes:
    """A record with id 0 (no real record has it) over a gap: the chunk's record walk steps over it."""
    return RECORD_MAGIC + struct.pack("<IQQ", size, 0, 0) + bytes(size - 28) + _I.pack(size)


def _rebuilt_chunk(slot: bytes, chunk: _Chunk) -> bytes | None:
    """The chunk with its kept records at their own offsets (templates and names are found by offset in the
    chunk), gaps stepped over by filler records, and a fresh header and checksums."""
    out = bytearray(CHUNK_SIZE)
    out[:len(slot)] = slot[:CHUNK_SIZE]
    out[:CHUNK_HEADER_SIZE] = bytes(CHUNK_HEADER_SIZE)  # the string and template tables too: parsed inline
    at = CHUNK_HEADER_SIZE
    kept = list(chunk.records)
    while kept and 0 < kept[0][0] - CHUNK_HEADER_SIZE < MIN_RECORD_SIZE:
        kept.pop(0)  # a gap too small for a filler before the first record: give that record up
    if not kept:
        return None
    previous: int | None = None
    for offset, size, _ in kept:
        gap = offset - at
        if gap >= MIN_RECORD_SIZE:
            out[at:offset] = _filler(gap)
        elif gap and previous is not None:  # too small for a filler: the previous record stretches over it
            grown = offset - previous
            _I.pack_into(out, previous + 4, grown)
            _I.pack_into(out, offset - 4, grown)
        previous, at = offset, offset + size
    first, last = kept[0][2], kept[-1][2]
    out[:8] = CHUNK_MAGIC
    struct.pack_into("<QQQQIII", out, 8, first, last, first, last, 128, kept[-1][0], at)
    _I.pack_into(out, 52, zlib.crc32(out[CHUNK_HEADER_SIZE:at]))
    _I.pack_into(out, 124, zlib.crc32(out[:120] + out[128:CHUNK_HEADER_SIZE]))
    return bytes(out)


class Recovery:
    """A damaged file's intact records, rebuilt into a valid file for pyevtx; `records()` yields them as
    `records_json()` does, and `damage()` tells what was lost once they have been read."""

    def __init__(self, data: bytes, first_error: str | None = None) -> None:
        """`first_error`: what sent the file here (pyevtx's error), reported when the scan finds nothing more
        precise."""
        self.first_error = first_error
        self.problems: list[str] = []
        header_problem, count = _header_problem(data[:FILE_HEADER_SIZE], len(data))
        if header_problem is not None:
            self.problems.append(header_problem)
        slots = (len(data) - FILE_HEADER_SIZE + CHUNK_SIZE - 1) // CHUNK_SIZE
        # A trusted header's chunk count leaves out slots of a preallocated file that were never written.
        if count is not None and header_problem is None:
            slots = min(slots, count)
        self.chunks: list[_Chunk] = []
        rebuilt: list[bytes] = []
        for index in range(max(slots, 0)):
            start = FILE_HEADER_SIZE + index * CHUNK_SIZE
            slot = data[start:start + CHUNK_SIZE]
            if not slot.strip(b"\0"):
                continue
            chunk = _scan_chunk(index, slot, self.problems)
            self.chunks.append(chunk)
            if chunk.records and (raw := _rebuilt_chunk(slot, chunk)) is not None:
                rebuilt.append(raw)
        self._file = _file_of(rebuilt)
        self._read: set[int] = set()
        self._count = len(rebuilt)

    def records(self) -> Iterator[dict[str, Any]]:
        """The recovered records in file order; a record that still fails to parse is skipped and noted."""
        if not self._count:
            return
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            parser = PyEvtxParser(io.BytesIO(self._file), validate_checksums=False, skip_errors=True)
            read = self._read
            for record in parser.records_json():
                rid = record["event_record_id"]  # type: ignore[index]
                if rid == 0:  # a filler
                    continue
                read.add(rid)
                yield record  # type: ignore[misc]
        for w in caught:
            if issubclass(w.category, RuntimeWarning):
                self.problems.append(str(w.message).removeprefix("Skipping EVTX data: "))

    def damage(self) -> EvtxDamage:
        expected: set[int] = set()
        unreadable = 0
        for c in self.chunks:
            expected.update(c.expected)
            expected.update(rid for _, _, rid in c.records)
            kept = sum(size for _, size, rid in c.records if rid in self._read)
            unreadable += max(c.data_end - CHUNK_HEADER_SIZE - kept, 0)
        return EvtxDamage(len(self._read), len(expected - self._read), unreadable,
                          self.problems[0] if self.problems else self.first_error or "damaged")


def _file_of(chunks: list[bytes]) -> bytes:
    header = bytearray(FILE_HEADER_SIZE)
    header[:8] = FILE_MAGIC
    struct.pack_into("<QQQIHHHH", header, 8, 0, max(len(chunks) - 1, 0), 0, 128, 1, 3, FILE_HEADER_SIZE,
                     len(chunks))
    _I.pack_into(header, 124, zlib.crc32(header[:120]))
    return bytes(header) + b"".join(chunks)
